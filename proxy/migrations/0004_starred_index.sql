-- A device's starred jobs, newest first, without reading its other jobs.
CREATE INDEX jobs_starred ON jobs (device, created_at) WHERE starred;
