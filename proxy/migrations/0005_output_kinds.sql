-- Outputs say what they are: `{"image": {filename, subfolder, type}}`, `{"video": ...}`,
-- `{"text": "..."}`. Everything kept before was read from `images`, so it is a picture.
UPDATE jobs
SET outputs = (SELECT json_group_array(json_object('image', json(file.value)))
               FROM json_each(jobs.outputs) AS file)
WHERE json_array_length(outputs) > 0;
