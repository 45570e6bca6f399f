//! `comfy-relay jobs`: the recent jobs from the job database, for an operator without a browser;
//! it reads beside a serving relay.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::date_time;
use crate::auth::paired::PairedDevices;
use crate::jobs::store::{Store, StoredJob};

/// Writes the newest `limit` jobs kept in `data_dir` to `out`, newest first, one a line: when
/// it was queued (UTC), its state, how long it took, which device queued it (its name when
/// paired), what it ran; a failure's reason below it.
pub fn run(data_dir: &Path, limit: usize, out: &mut impl Write) -> anyhow::Result<()> {
    let jobs = match Store::reader(data_dir)? {
        Some(store) => store.recent(limit)?,
        None => Vec::new(),
    };
    if jobs.is_empty() {
        writeln!(
            out,
            "No job has been queued through this relay yet (data directory: {}).",
            data_dir.display()
        )?;
    }
    let names: HashMap<String, String> = PairedDevices::open(data_dir)?
        .list()
        .into_iter()
        .map(|device| (device.id, device.name))
        .collect();
    for job in jobs {
        let device = job.device.as_str();
        let who = names.get(device).map_or(job.device.short(), String::as_str);
        writeln!(out, "{}", line(&job, who))?;
    }
    Ok(())
}

fn line(job: &StoredJob, who: &str) -> String {
    let took = match job.finished_at {
        Some(end) => seconds(end.saturating_sub(job.created_at)),
        None => "-".to_owned(),
    };
    let what = job
        .workflow_name
        .as_deref()
        .unwrap_or("(a workflow sent whole)");
    let mut line = format!(
        "{}  {:<11}  {:>8}  {}  {}  {}",
        date_time(job.created_at),
        job.state.name(),
        took,
        who,
        what,
        job.id
    );
    if let Some(error) = &job.error {
        line.push_str(&format!(
            "\n    {}",
            error.message.lines().next().unwrap_or("")
        ));
    }
    line
}

fn seconds(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
    }
}

#[cfg(test)]
mod tests {
    use shared::api::{JobError, JobState};

    use super::*;
    use crate::auth::paired::PairedDevice;
    use crate::device::DeviceId;
    use crate::jobs::store::tests::job;

    fn listed(data_dir: &Path, limit: usize) -> String {
        let mut out = Vec::new();
        run(data_dir, limit, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn without_a_database_it_says_there_is_no_job_yet() {
        let dir = tempfile::tempdir().unwrap();
        assert!(listed(dir.path(), 20).starts_with("No job has been queued"));
        assert!(
            !dir.path().join("jobs.sqlite3").exists(),
            "reading creates nothing"
        );
    }

    #[test]
    fn jobs_are_listed_newest_first_with_who_what_state_and_duration_beside_the_relay() {
        let dir = tempfile::tempdir().unwrap();
        let phone = DeviceId::parse("0123456789abcdef").unwrap();
        PairedDevices::open(dir.path())
            .unwrap()
            .add(PairedDevice {
                id: phone.as_str().to_owned(),
                name: "Chrome on Android".to_owned(),
                paired_at: 0,
            })
            .unwrap();
        let serving = Store::open(dir.path()).unwrap();
        let mut failed = job("f00d", 1_795_501_903_265, JobState::Failed);
        failed.device = phone;
        failed.finished_at = Some(failed.created_at + 83_000);
        failed.error = Some(JobError {
            message: "OOM in KSampler: out of memory\ntraceback".to_owned(),
            node_id: None,
            node_type: None,
            traceback: Vec::new(),
        });
        serving.save(&failed).unwrap();
        let mut waiting = job("beef", 1_795_501_963_265, JobState::Queued);
        waiting.workflow_name = None;
        serving.save(&waiting).unwrap();
        serving
            .save(&job("old", 1_000, JobState::Succeeded))
            .unwrap();

        assert_eq!(
            listed(dir.path(), 2),
            "2026-11-24 06:32  queued              -  scripts  (a workflow sent whole)  beef\n\
             2026-11-24 06:31  failed          1m23s  Chrome on Android  portrait  f00d\n    \
             OOM in KSampler: out of memory\n"
        );
    }
}
