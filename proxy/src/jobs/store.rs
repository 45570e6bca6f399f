//! The record of every job, in SQLite in the data directory: what survives a relay restart.
//!
//! The registry stays the fast path for live progress and previews; the store keeps what a
//! job is once it matters (accepted, running, ended, its outputs and error), written before
//! the relay answers. The database is in WAL mode, so `comfy-relay jobs` reads it while the
//! relay writes; the relay holds `relay.lock` beside it, so a second relay on the same data
//! directory fails at start instead of writing beside the first. Migrations live in
//! `proxy/migrations/`, numbered, applied in order at start (`PRAGMA user_version` says how
//! many are).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, params};
use shared::api::{JobError, JobState};
use shared::comfy::{ImageRef, Output, PromptRequest};

use crate::device::DeviceId;

/// The schema, one step per file, in order.
const MIGRATIONS: [&str; 6] = [
    include_str!("../../migrations/0001_jobs.sql"),
    include_str!("../../migrations/0002_relay_queue.sql"),
    include_str!("../../migrations/0003_stars_and_files.sql"),
    include_str!("../../migrations/0004_starred_index.sql"),
    include_str!("../../migrations/0005_output_kinds.sql"),
    include_str!("../../migrations/0006_backends.sql"),
];

/// The database's file name in the data directory.
const FILE_NAME: &str = "jobs.sqlite3";

/// The file a serving relay holds locked in the data directory.
const LOCK_NAME: &str = "relay.lock";

/// What the store keeps about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    /// Its id, the relay's and ComfyUI's prompt id.
    pub id: String,
    /// The relay's number for it.
    pub number: i64,
    /// The device that queued it.
    pub device: DeviceId,
    /// When it was queued (ms since the epoch).
    pub created_at: u64,
    /// When it ended.
    pub finished_at: Option<u64>,
    /// Where it was last known to be.
    pub state: JobState,
    /// The saved workflow it ran.
    pub workflow_name: Option<String>,
    /// The request it was queued with.
    pub prompt: PromptRequest,
    /// What it made.
    pub outputs: Vec<Output>,
    /// Why it failed or was lost.
    pub error: Option<JobError>,
    /// Whether it was handed to ComfyUI (else the relay holds it).
    pub handed: bool,
    /// The URL of the ComfyUI server it was handed to, when the relay recorded one.
    pub backend: Option<String>,
    /// Its order among its device's held jobs, lowest first.
    pub rank: u64,
    /// Whether its device starred it (a retention keeps it).
    pub starred: bool,
}

/// Which of a device's jobs a page holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Queued before this job.
    pub before: Option<&'a str>,
    /// In this state.
    pub state: Option<JobState>,
    /// Of this saved workflow.
    pub workflow: Option<&'a str>,
    /// Whose request contains this text (ASCII letters in any case).
    pub text: Option<&'a str>,
    /// Starred ones only.
    pub starred: bool,
    /// Ones that made at least one file only.
    pub with_outputs: bool,
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another relay serves from the same data directory.
    #[error(
        "another comfy-relay is using the data directory {0} (it holds {LOCK_NAME}); stop it, or give this one its own --data-dir"
    )]
    Held(PathBuf),
    /// The file could not be opened or is not a database.
    #[error(
        "cannot use the job database {path}: {cause} (is the file damaged? Move it away to start with no job history)"
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        cause: rusqlite::Error,
    },
    /// The file could not be made.
    #[error("cannot create the job database {path}: {cause}")]
    Create {
        /// The database file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A read or write failed once open.
    #[error("the job database failed: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored value did not read back.
    #[error("job {id} in the database cannot be read: {cause}")]
    Damaged {
        /// The job.
        id: String,
        /// What was wrong.
        cause: String,
    },
}

/// The job database.
pub struct Store {
    connection: Mutex<Connection>,
    /// Held locked while the relay serves; `None` for a reader.
    _lock: Option<std::fs::File>,
}

/// How long a write or read waits for another connection's (`comfy-relay jobs` reading).
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Store {
    /// Opens (or creates, readable by its owner only) the database in `data_dir` for the relay
    /// serving from it, and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(FILE_NAME);
        let create = |path: &Path| {
            create_private(path).map_err(|cause| StoreError::Create {
                path: path.to_owned(),
                cause,
            })
        };
        let lock_path = data_dir.join(LOCK_NAME);
        let lock = create(&lock_path)?;
        if let Err(error) = lock.try_lock() {
            return Err(match error {
                std::fs::TryLockError::WouldBlock => StoreError::Held(data_dir.to_owned()),
                std::fs::TryLockError::Error(cause) => StoreError::Create {
                    path: lock_path,
                    cause,
                },
            });
        }
        create(&path)?;
        let opened = Connection::open(&path).and_then(|mut connection| {
            connection.busy_timeout(BUSY_WAIT)?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.pragma_update(None, "foreign_keys", "ON")?;
            migrate(&mut connection)?;
            Ok(connection)
        });
        let connection = opened.map_err(|cause| StoreError::Open { path, cause })?;
        Ok(Self {
            connection: Mutex::new(connection),
            _lock: Some(lock),
        })
    }

    /// Opens the database in `data_dir` to read it beside a serving relay (`comfy-relay
    /// jobs`); `None` when there is none yet.
    pub fn reader(data_dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = data_dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        let opened = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|connection| {
                connection.busy_timeout(BUSY_WAIT)?;
                connection.query_row("SELECT count(*) FROM jobs", [], |_| Ok(()))?;
                Ok(connection)
            });
        let connection = opened.map_err(|cause| StoreError::Open { path, cause })?;
        Ok(Some(Self {
            connection: Mutex::new(connection),
            _lock: None,
        }))
    }

    /// Up to `limit` of `device`'s jobs matching `filter`, newest first, queued before the job
    /// `before` when given.
    pub fn page(
        &self,
        device: &DeviceId,
        filter: &Filter<'_>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&page_sql(filter.starred))?;
        let text = filter.text.map(|text| {
            text.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        });
        let rows = statement.query_map(
            params![
                device.as_str(),
                filter.before,
                filter.state.map(JobState::name),
                filter.workflow,
                text,
                filter.with_outputs,
                i64::try_from(limit).unwrap_or(i64::MAX),
            ],
            Row::from_sql,
        )?;
        rows.map(|row| row?.read()).collect()
    }

    /// The newest `limit` jobs, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<StoredJob>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map([limit], Row::from_sql)?;
        rows.map(|row| row?.read()).collect()
    }

    /// A store that keeps nothing past the process, for tests.
    #[cfg(test)]
    pub fn in_memory() -> Self {
        let mut connection = Connection::open_in_memory().expect("SQLite opens in memory");
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .expect("foreign keys turn on");
        migrate(&mut connection).expect("the migrations apply");
        Self {
            connection: Mutex::new(connection),
            _lock: None,
        }
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .expect("the store's lock is never poisoned")
    }

    /// The id the relay gives ComfyUI for its own session, made once: ComfyUI sends a prompt's
    /// progress only to the client that queued it, so after a restart the relay must be that
    /// client again to follow the jobs it queued before.
    pub fn client_id(&self) -> Result<String, StoreError> {
        let connection = self.connection();
        connection.execute(
            "INSERT INTO relay (key, value) VALUES ('comfyui_client_id', ?1)
             ON CONFLICT (key) DO NOTHING",
            [uuid::Uuid::new_v4().simple().to_string()],
        )?;
        Ok(connection.query_row(
            "SELECT value FROM relay WHERE key = 'comfyui_client_id'",
            [],
            |row| row.get(0),
        )?)
    }

    /// Records `job` as it is now, replacing what was recorded before.
    pub fn save(&self, job: &StoredJob) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        transaction
            .prepare_cached(
                "INSERT INTO jobs (id, number, device, created_at, finished_at, state,
                                   workflow_name, prompt, outputs, error, handed, rank, starred,
                                   backend)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (id) DO UPDATE SET
                     finished_at = excluded.finished_at, state = excluded.state,
                     outputs = excluded.outputs, error = excluded.error,
                     handed = excluded.handed, rank = excluded.rank, starred = excluded.starred,
                     backend = excluded.backend",
            )?
            .execute(params![
                job.id,
                job.number,
                job.device.as_str(),
                job.created_at,
                job.finished_at,
                job.state.name(),
                job.workflow_name,
                to_json(&job.prompt),
                to_json(&job.outputs),
                job.error.as_ref().map(to_json),
                job.handed,
                job.rank,
                job.starred,
                job.backend,
            ])?;
        transaction
            .prepare_cached("DELETE FROM job_files WHERE job = ?1")?
            .execute([&job.id])?;
        let mut file = transaction.prepare_cached(
            "INSERT OR IGNORE INTO job_files (job, filename, subfolder, type)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for output in job.outputs.iter().filter_map(Output::file) {
            file.execute(params![
                job.id,
                output.filename,
                output.subfolder,
                output.kind
            ])?;
        }
        drop(file);
        transaction.commit()?;
        Ok(())
    }

    /// The job `id`, if the store has it.
    pub fn find(&self, id: &str) -> Result<Option<StoredJob>, StoreError> {
        let connection = self.connection();
        let mut statement =
            connection.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?;
        let mut rows = statement.query_map([id], Row::from_sql)?;
        rows.next().map(|row| row?.read()).transpose()
    }

    /// Stars or unstars job `id`; false when the store has no such job.
    pub fn set_starred(&self, id: &str, starred: bool) -> Result<bool, StoreError> {
        let changed = self.connection().execute(
            "UPDATE jobs SET starred = ?2 WHERE id = ?1",
            params![id, starred],
        )?;
        Ok(changed > 0)
    }

    /// Forgets job `id` and its files' record; false when the store has no such job.
    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .connection()
            .execute("DELETE FROM jobs WHERE id = ?1", [id])?;
        Ok(deleted > 0)
    }

    /// Whether one of `device`'s jobs made `file`.
    pub fn made(&self, device: &DeviceId, file: &ImageRef) -> Result<bool, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM job_files JOIN jobs ON jobs.id = job_files.job
                            WHERE filename = ?1 AND subfolder = ?2 AND type = ?3
                              AND device = ?4)",
        )?;
        Ok(statement.query_row(
            params![file.filename, file.subfolder, file.kind, device.as_str()],
            |row| row.get(0),
        )?)
    }

    /// The URL of the ComfyUI server that ran `device`'s newest job that made `file` (job
    /// `job`, when given), if the store knows; `Some(None)` for a job kept by a relay that knew
    /// one ComfyUI.
    pub fn made_on(
        &self,
        device: &DeviceId,
        file: &ImageRef,
        job: Option<&str>,
    ) -> Result<Option<Option<String>>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT jobs.backend FROM job_files JOIN jobs ON jobs.id = job_files.job
             WHERE filename = ?1 AND subfolder = ?2 AND type = ?3 AND device = ?4
               AND (?5 IS NULL OR jobs.id = ?5)
             ORDER BY jobs.created_at DESC LIMIT 1",
        )?;
        let mut rows = statement.query_map(
            params![
                file.filename,
                file.subfolder,
                file.kind,
                device.as_str(),
                job
            ],
            |row| row.get::<_, Option<String>>(0),
        )?;
        Ok(rows.next().transpose()?)
    }

    /// Forgets every finished job that ended before `ended_before` (ms since the epoch) and
    /// is not starred; returns their ids.
    pub fn prune(&self, ended_before: u64) -> Result<Vec<String>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "DELETE FROM jobs WHERE finished_at < ?1 AND NOT starred RETURNING id",
        )?;
        let ids = statement.query_map([ended_before], |row| row.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// The number the next job gets: one more than any job has.
    pub fn next_number(&self) -> Result<i64, StoreError> {
        Ok(self.connection().query_row(
            "SELECT coalesce(max(number), 0) + 1 FROM jobs",
            [],
            |row| row.get(0),
        )?)
    }

    /// Gives job `from` the id `to` (an old ComfyUI ran it under an id of its own).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        // Its files' rows follow (ON UPDATE CASCADE).
        self.connection()
            .execute("UPDATE jobs SET id = ?2 WHERE id = ?1", [from, to])?;
        Ok(())
    }

    /// Every unfinished job and the newest `finished` finished ones, oldest first.
    pub fn load(&self, finished: usize) -> Result<Vec<StoredJob>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare(&format!(
            "SELECT {COLUMNS}
             FROM (SELECT *, rowid AS queued, row_number() OVER (
                       PARTITION BY finished_at IS NULL ORDER BY created_at DESC, rowid DESC
                   ) AS newness
                   FROM jobs)
             WHERE finished_at IS NULL OR newness <= ?1
             ORDER BY created_at, queued"
        ))?;
        let limit = i64::try_from(finished).unwrap_or(i64::MAX);
        let rows = statement.query_map([limit], Row::from_sql)?;
        rows.map(|row| row?.read()).collect()
    }
}

/// The query of [`Store::page`]: ?1 device, ?2 before, ?3 state, ?4 workflow, ?5 text (LIKE
/// escaped), ?6 with outputs only, ?7 limit. "Starred only" is written out, not a parameter,
/// so that SQLite reads the starred jobs' own index.
fn page_sql(starred: bool) -> String {
    let starred = if starred { "AND starred" } else { "" };
    format!(
        "SELECT {COLUMNS} FROM jobs
         WHERE device = ?1 {starred}
           AND (?2 IS NULL OR (created_at, rowid) <
                (SELECT created_at, rowid FROM jobs WHERE id = ?2 AND device = ?1))
           AND (?3 IS NULL OR state = ?3)
           AND (?4 IS NULL OR workflow_name = ?4)
           AND (?5 IS NULL OR prompt LIKE '%' || ?5 || '%' ESCAPE '\\')
           AND (NOT ?6 OR EXISTS (SELECT 1 FROM job_files WHERE job = jobs.id))
         ORDER BY created_at DESC, rowid DESC
         LIMIT ?7"
    )
}

/// The columns [`Row::from_sql`] reads, in its order.
const COLUMNS: &str = "id, number, device, created_at, finished_at, state, workflow_name, \
                       prompt, outputs, error, handed, rank, starred, backend";

/// A job's row as SQLite returns it, before its JSON and names are read.
struct Row {
    id: String,
    number: i64,
    device: String,
    created_at: u64,
    finished_at: Option<u64>,
    state: String,
    workflow_name: Option<String>,
    prompt: String,
    outputs: String,
    error: Option<String>,
    handed: bool,
    rank: u64,
    starred: bool,
    backend: Option<String>,
}

impl Row {
    fn from_sql(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            number: row.get(1)?,
            device: row.get(2)?,
            created_at: row.get(3)?,
            finished_at: row.get(4)?,
            state: row.get(5)?,
            workflow_name: row.get(6)?,
            prompt: row.get(7)?,
            outputs: row.get(8)?,
            error: row.get(9)?,
            handed: row.get(10)?,
            rank: row.get(11)?,
            starred: row.get(12)?,
            backend: row.get(13)?,
        })
    }

    fn read(self) -> Result<StoredJob, StoreError> {
        let id = &self.id;
        Ok(StoredJob {
            device: DeviceId::parse(&self.device).ok_or_else(|| StoreError::Damaged {
                id: id.clone(),
                cause: format!("device {:?} is no device id", self.device),
            })?,
            state: from_json(id, "state", &format!("{:?}", self.state))?,
            prompt: from_json(id, "prompt", &self.prompt)?,
            outputs: from_json(id, "outputs", &self.outputs)?,
            error: match &self.error {
                Some(text) => Some(from_json(id, "error", text)?),
                None => None,
            },
            number: self.number,
            created_at: self.created_at,
            finished_at: self.finished_at,
            workflow_name: self.workflow_name,
            handed: self.handed,
            backend: self.backend,
            rank: self.rank,
            starred: self.starred,
            id: self.id,
        })
    }
}

fn from_json<T: serde::de::DeserializeOwned>(
    id: &str,
    field: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Damaged {
        id: id.to_owned(),
        cause: format!("its {field}: {error}"),
    })
}

/// Makes the file at `path` (and its directory) if missing, readable by its owner only; SQLite
/// gives its journal files the same mode.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("job values serialise")
}

/// Applies the migrations the database has not had yet, each in its own transaction.
fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (number, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", number + 1)?;
        transaction.commit()?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use shared::workflow::Workflow;

    use super::*;
    use crate::device::DeviceSecret;

    /// The ids of the jobs a read gave, in its order.
    fn ids(read: Result<Vec<StoredJob>, StoreError>) -> Vec<String> {
        read.unwrap().into_iter().map(|job| job.id).collect()
    }

    /// A job of the scripts' device running the saved workflow `portrait`, finished 5 ms after
    /// it was queued when `state` is an end.
    pub(crate) fn job(id: &str, created_at: u64, state: JobState) -> StoredJob {
        let prompt = Workflow::parse(
            r#"{"9":{"class_type":"SaveImage","inputs":{"images":["8",0],"filename_prefix":"x"}}}"#,
        )
        .unwrap();
        StoredJob {
            id: id.to_owned(),
            number: 3,
            device: DeviceId::scripts(),
            created_at,
            finished_at: state.is_finished().then_some(created_at + 5),
            state,
            workflow_name: Some("portrait".to_owned()),
            prompt: PromptRequest {
                prompt,
                client_id: Some("relay".to_owned()),
                extra_data: serde_json::Map::new(),
                prompt_id: None,
            },
            outputs: Vec::new(),
            error: None,
            handed: true,
            backend: Some("http://127.0.0.1:8188/".to_owned()),
            rank: created_at,
            starred: false,
        }
    }

    #[test]
    fn what_is_saved_reads_back_the_same_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut finished = job("b", 20, JobState::Failed);
        finished.error = Some(JobError {
            message: "KeyError in KSampler: 'x'".to_owned(),
            node_id: Some("3".to_owned()),
            node_type: Some("KSampler".to_owned()),
            traceback: vec!["line 1".to_owned()],
        });
        finished.outputs = vec![
            Output::Video(ImageRef {
                filename: "x_00001_.mp4".to_owned(),
                subfolder: "video".to_owned(),
                kind: "output".to_owned(),
            }),
            Output::Text("a caption".to_owned()),
        ];
        let running = job("a", 10, JobState::Running);
        {
            let store = Store::open(dir.path()).unwrap();
            store.save(&running).unwrap();
            store.save(&job("b", 20, JobState::Queued)).unwrap();
            store.save(&finished).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load(10).unwrap(), vec![running, finished]);
    }

    #[test]
    fn jobs_kept_before_the_relay_held_any_read_back_as_handed_to_comfyui() {
        let dir = tempfile::tempdir().unwrap();
        {
            let connection = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            connection.execute_batch(MIGRATIONS[0]).unwrap();
            connection.pragma_update(None, "user_version", 1).unwrap();
            connection
                .execute(
                    "INSERT INTO jobs (id, number, device, created_at, state, prompt, outputs)
                     VALUES ('old', 41, ?1, 7, 'queued', ?2, '[]')",
                    params![
                        DeviceId::scripts().as_str(),
                        to_json(&job("x", 1, JobState::Queued).prompt)
                    ],
                )
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let old = store.load(10).unwrap().remove(0);
        assert!(old.handed, "{old:?}");
        assert_eq!(store.next_number().unwrap(), 42);
        let mut held = job("held", 9, JobState::Queued);
        held.handed = false;
        held.rank = 3;
        store.save(&held).unwrap();
        assert_eq!(store.load(10).unwrap()[1], held);
    }

    #[test]
    fn loading_keeps_every_unfinished_job_and_only_the_newest_finished_ones() {
        let store = Store::in_memory();
        for (id, at, state) in [
            ("old", 1, JobState::Succeeded),
            ("waiting", 2, JobState::Queued),
            ("mid", 3, JobState::Interrupted),
            ("new", 4, JobState::Lost),
        ] {
            store.save(&job(id, at, state)).unwrap();
        }
        assert_eq!(ids(store.load(2)), ["waiting", "mid", "new"]);
    }

    #[test]
    fn five_thousand_finished_jobs_page_by_cursor_without_gaps_and_are_found_by_text() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let phone = DeviceSecret::generate().device();
        let mut mine = Vec::new();
        for at in 0..5_000_u64 {
            // Pairs of the device's jobs share a time: the cursor must still step past each.
            let mut kept = job(&format!("job-{at:04}"), at / 4, JobState::Succeeded);
            if at % 2 == 0 {
                kept.device = phone.clone();
                mine.push(kept.id.clone());
            }
            if at % 50 == 0 {
                kept.prompt
                    .extra_data
                    .insert("note".into(), "a red_fox".into());
            }
            store.save(&kept).unwrap();
        }
        mine.reverse();
        let mut paged = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let filter = Filter {
                before: before.as_deref(),
                ..Filter::default()
            };
            let page = store.page(&phone, &filter, 100).unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.id.clone());
            paged.extend(page.into_iter().map(|j| j.id));
        }
        assert_eq!(paged, mine, "every job of the device once, newest first");

        let text = Filter {
            text: Some("red_fox"),
            ..Filter::default()
        };
        let found = ids(store.page(&phone, &text, 1_000));
        let expected: Vec<&String> = mine
            .iter()
            .filter(|id| id[4..].parse::<u64>().unwrap() % 50 == 0)
            .collect();
        assert_eq!(found.iter().collect::<Vec<_>>(), expected);
        let wildcard = Filter {
            text: Some("red%fox"),
            ..Filter::default()
        };
        assert!(store.page(&phone, &wildcard, 10).unwrap().is_empty());
    }

    fn made_file(name: &str) -> ImageRef {
        ImageRef {
            filename: name.to_owned(),
            subfolder: "team".to_owned(),
            kind: "output".to_owned(),
        }
    }

    #[test]
    fn a_file_is_known_as_made_by_its_jobs_device_until_the_job_is_deleted() {
        let store = Store::in_memory();
        let phone = DeviceSecret::generate().device();
        let mut done = job("done", 1, JobState::Succeeded);
        done.device = phone.clone();
        done.outputs = vec![
            Output::Image(made_file("a.png")),
            Output::Image(made_file("b.png")),
        ];
        store.save(&done).unwrap();
        // Saved again with fewer files (never happens to a finished job, but the rows follow).
        done.outputs.pop();
        store.save(&done).unwrap();
        assert!(store.made(&phone, &made_file("a.png")).unwrap());
        assert!(!store.made(&phone, &made_file("b.png")).unwrap());
        assert!(
            !store
                .made(&DeviceId::scripts(), &made_file("a.png"))
                .unwrap()
        );
        let other_folder = ImageRef {
            subfolder: String::new(),
            ..made_file("a.png")
        };
        assert!(!store.made(&phone, &other_folder).unwrap());

        store.rename("done", "renamed").unwrap();
        assert!(store.made(&phone, &made_file("a.png")).unwrap());
        assert_eq!(store.find("renamed").unwrap().unwrap().outputs.len(), 1);

        assert!(store.delete("renamed").unwrap());
        assert!(!store.delete("renamed").unwrap());
        assert_eq!(store.find("renamed").unwrap(), None);
        assert!(!store.made(&phone, &made_file("a.png")).unwrap());
    }

    #[test]
    fn where_a_file_was_made_is_its_devices_newest_job_or_the_job_named() {
        let store = Store::in_memory();
        let (phone, laptop) = (
            DeviceSecret::generate().device(),
            DeviceSecret::generate().device(),
        );
        for (id, at, device, server) in [
            ("first", 1, &phone, "http://a:8188/"),
            ("second", 2, &phone, "http://b:8188/"),
            ("theirs", 3, &laptop, "http://c:8188/"),
        ] {
            let mut made = job(id, at, JobState::Succeeded);
            made.device = device.clone();
            made.backend = Some(server.to_owned());
            made.outputs = vec![Output::Image(made_file("ComfyUI_00001_.png"))];
            store.save(&made).unwrap();
        }
        let file = made_file("ComfyUI_00001_.png");
        let on = |job| store.made_on(&phone, &file, job).unwrap();
        assert_eq!(on(None), Some(Some("http://b:8188/".to_owned())));
        assert_eq!(on(Some("first")), Some(Some("http://a:8188/".to_owned())));
        assert_eq!(
            on(Some("theirs")),
            None,
            "another device's job names nothing"
        );
        assert_eq!(on(Some("gone")), None);
    }

    #[test]
    fn the_retention_forgets_old_finished_jobs_but_keeps_starred_and_unfinished_ones() {
        let store = Store::in_memory();
        let mut starred = job("starred", 1, JobState::Succeeded);
        starred.starred = true;
        store.save(&starred).unwrap();
        for (id, at, state) in [
            ("old", 2, JobState::Failed),
            ("waiting", 3, JobState::Queued),
            ("recent", 100, JobState::Succeeded),
        ] {
            store.save(&job(id, at, state)).unwrap();
        }
        assert_eq!(store.prune(50).unwrap(), ["old"]);
        let kept = ids(store.recent(10));
        assert_eq!(kept, ["recent", "waiting", "starred"]);
        assert!(store.set_starred("starred", false).unwrap());
        assert!(!store.set_starred("gone", true).unwrap());
        assert_eq!(store.prune(50).unwrap(), ["starred"]);
    }

    #[test]
    fn pages_can_hold_only_starred_jobs_or_only_jobs_that_made_something() {
        let store = Store::in_memory();
        let device = DeviceId::scripts();
        let mut made = job("made", 1, JobState::Succeeded);
        made.outputs = vec![Output::Image(made_file("m.png"))];
        let mut starred = job("starred", 2, JobState::Failed);
        starred.starred = true;
        for kept in [made, starred, job("plain", 3, JobState::Succeeded)] {
            store.save(&kept).unwrap();
        }
        let page = |filter: Filter<'_>| ids(store.page(&device, &filter, 10));
        assert_eq!(page(Filter::default()), ["plain", "starred", "made"]);
        let only_starred = Filter {
            starred: true,
            ..Filter::default()
        };
        assert_eq!(page(only_starred), ["starred"]);
        let with_outputs = Filter {
            with_outputs: true,
            ..Filter::default()
        };
        assert_eq!(page(with_outputs), ["made"]);
    }

    #[test]
    fn starred_jobs_are_read_through_their_own_index() {
        let store = Store::in_memory();
        let connection = store.connection();
        let plan: Vec<String> = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {}", page_sql(true)))
            .unwrap()
            .query_map(
                params![
                    "d",
                    None::<String>,
                    None::<String>,
                    None::<String>,
                    None::<String>,
                    false,
                    10
                ],
                |row| row.get(3),
            )
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("jobs_starred")),
            "{plan:?}"
        );
    }

    #[test]
    fn files_and_pictures_of_jobs_kept_by_an_older_relay_are_known_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let phone = DeviceSecret::generate().device();
        {
            let mut connection = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            for migration in &MIGRATIONS[..2] {
                connection.execute_batch(migration).unwrap();
            }
            connection.pragma_update(None, "user_version", 2).unwrap();
            let transaction = connection.transaction().unwrap();
            transaction
                .execute(
                    "INSERT INTO jobs (id, number, device, created_at, finished_at, state, prompt,
                                       outputs)
                     VALUES ('old', 1, ?1, 7, 9, 'succeeded', ?2, ?3)",
                    params![
                        phone.as_str(),
                        to_json(&job("x", 1, JobState::Queued).prompt),
                        to_json(&vec![made_file("old.png")]),
                    ],
                )
                .unwrap();
            transaction.commit().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(store.made(&phone, &made_file("old.png")).unwrap());
        let old = store.find("old").unwrap().unwrap();
        assert!(!old.starred);
        // Kept before outputs said what they are: a picture.
        assert_eq!(old.outputs, [Output::Image(made_file("old.png"))]);
    }

    #[test]
    fn the_client_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap().client_id().unwrap();
        assert_eq!(first.len(), 32);
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.client_id().unwrap(), first);
        assert_eq!(again.client_id().unwrap(), first);
    }

    #[test]
    fn the_database_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        Store::open(&dir.path().join("new")).unwrap();
        let mode = std::fs::metadata(dir.path().join("new").join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_with_its_path_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(
            &path,
            b"these are not the jobs you are looking for, not at all",
        )
        .unwrap();
        let refused = Store::open(dir.path()).err().unwrap();
        let message = refused.to_string();
        assert!(matches!(refused, StoreError::Open { .. }), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("not a database"), "{message}");
        assert!(std::fs::read(&path).unwrap().starts_with(b"these are not"));
    }

    #[test]
    fn a_data_directory_another_relay_serves_from_is_refused_at_once_and_freed_when_it_stops() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let refused = Store::open(dir.path()).err().unwrap();
        assert!(matches!(refused, StoreError::Held(_)), "{refused}");
        assert!(
            refused.to_string().contains("another comfy-relay"),
            "{refused}"
        );
        drop(first);
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn a_reader_sees_what_the_serving_relay_wrote_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Store::reader(dir.path()).unwrap().is_none(),
            "no database yet"
        );
        let relay = Store::open(dir.path()).unwrap();
        for (id, at) in [("a", 1), ("b", 2), ("c", 3)] {
            relay.save(&job(id, at, JobState::Succeeded)).unwrap();
        }
        let reader = Store::reader(dir.path()).unwrap().unwrap();
        let ids = ids(reader.recent(2));
        assert_eq!(ids, ["c", "b"]);
        relay.save(&job("d", 4, JobState::Queued)).unwrap();
        assert_eq!(reader.recent(1).unwrap()[0].id, "d");
    }
}
