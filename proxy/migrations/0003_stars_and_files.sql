-- A device can star a job (its results) to find it again and keep it past a retention.
ALTER TABLE jobs ADD COLUMN starred INTEGER NOT NULL DEFAULT 0 CHECK (starred IN (0, 1));

-- The files each job made, one row each, so that "may this device fetch this file" is one
-- indexed look-up for jobs long gone from memory. Rows follow their job (renamed, deleted).
CREATE TABLE job_files (
    job       TEXT NOT NULL REFERENCES jobs (id) ON UPDATE CASCADE ON DELETE CASCADE,
    filename  TEXT NOT NULL,
    subfolder TEXT NOT NULL,
    type      TEXT NOT NULL,
    PRIMARY KEY (job, filename, subfolder, type)
) STRICT, WITHOUT ROWID;

CREATE INDEX job_files_by_name ON job_files (filename, subfolder, type);

INSERT OR IGNORE INTO job_files (job, filename, subfolder, type)
SELECT jobs.id, file.value ->> 'filename', coalesce(file.value ->> 'subfolder', ''),
       coalesce(file.value ->> 'type', 'output')
FROM jobs, json_each(jobs.outputs) AS file
WHERE file.value ->> 'filename' IS NOT NULL;

-- Finished jobs by when they ended, for the retention.
CREATE INDEX jobs_by_end ON jobs (finished_at) WHERE finished_at IS NOT NULL;
