//! The gallery: everything this device's jobs made, newest first, each once.

use shared::api::Job;
use shared::comfy::Output;

/// One output and the job that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    /// What the job made.
    pub output: Output,
    /// The job's id.
    pub job_id: String,
    /// The job's number.
    pub job_number: i64,
    /// Whether the job is starred.
    pub starred: bool,
    /// The saved workflow it ran, if any.
    pub workflow_name: Option<String>,
}

/// The outputs of `jobs` (given newest first), newest first, without repeats.
pub fn shots(jobs: &[Job]) -> Vec<Shot> {
    let mut shots: Vec<Shot> = Vec::new();
    for job in jobs {
        for output in &job.outputs {
            if !shots.iter().any(|s| s.output == *output) {
                shots.push(Shot {
                    output: output.clone(),
                    job_id: job.id.clone(),
                    job_number: job.number,
                    starred: job.starred,
                    workflow_name: job.workflow_name.clone(),
                });
            }
        }
    }
    shots
}

/// The index after `index` when swiping `forward` (or back), wrapping around.
pub fn step(index: usize, count: usize, forward: bool) -> usize {
    match (count, forward) {
        (0, _) => 0,
        (_, true) => (index + 1) % count,
        (_, false) => (index + count - 1) % count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::api::JobState;
    use shared::comfy::ImageRef;

    fn file(name: &str) -> ImageRef {
        ImageRef {
            filename: name.to_owned(),
            subfolder: String::new(),
            kind: "output".into(),
        }
    }

    fn job(number: i64, files: &[&str]) -> Job {
        Job {
            number,
            progress: 1.0,
            outputs: files.iter().map(|f| Output::Image(file(f))).collect(),
            ..crate::model::bare_job(&number.to_string(), JobState::Succeeded)
        }
    }

    #[test]
    fn newest_first_and_each_once() {
        let shots = shots(&[job(2, &["b.png", "c.png"]), job(1, &["a.png", "b.png"])]);
        let names: Vec<_> = shots
            .iter()
            .filter_map(|s| s.output.file())
            .map(|f| f.filename.as_str())
            .collect();
        assert_eq!(names, ["b.png", "c.png", "a.png"]);
        assert_eq!(shots[2].job_number, 1);
    }

    #[test]
    fn swiping_wraps_around() {
        assert_eq!(step(2, 3, true), 0);
        assert_eq!(step(0, 3, false), 2);
        assert_eq!(step(0, 0, true), 0);
    }
}
