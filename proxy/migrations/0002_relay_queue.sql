-- The relay holds waiting jobs itself and hands ComfyUI a few at a time.
-- handed: 1 once the job was given to ComfyUI (every job before this step was);
-- rank: its order among its device's held jobs, lowest first.
-- number becomes the relay's own job number.
ALTER TABLE jobs ADD COLUMN handed INTEGER NOT NULL DEFAULT 1 CHECK (handed IN (0, 1));
ALTER TABLE jobs ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
