-- A relay may run jobs on several ComfyUI servers: each job names the one it was handed to,
-- by URL (NULL: handed by a relay that knew one ComfyUI, or not handed yet).
ALTER TABLE jobs ADD COLUMN backend TEXT;
