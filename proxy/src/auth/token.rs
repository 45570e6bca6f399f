//! The relay's access token: given by the operator, or generated once and kept in the data
//! directory (readable by its owner only).

use std::io;
use std::path::Path;

/// The access token.
pub struct Token {
    value: String,
}

/// Writes `contents` to `path` readable by the owner only, replacing it atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        io::Write::write_all(&mut file, contents)?;
        file.sync_all()?;
    }
    std::fs::rename(temporary, path)
}

impl Token {
    /// `given`, or the token kept in `data_dir`, created there on first use.
    pub fn load_or_create(data_dir: &Path, given: Option<&str>) -> io::Result<Self> {
        if let Some(given) = given.map(str::trim).filter(|t| !t.is_empty()) {
            return Ok(Self::new(given.to_owned()));
        }
        let path = data_dir.join("token");
        match std::fs::read_to_string(&path) {
            Ok(stored) if !stored.trim().is_empty() => Ok(Self::new(stored.trim().to_owned())),
            Ok(_) => Self::create(&path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Self::create(&path),
            Err(error) => Err(error),
        }
    }

    fn create(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let value = uuid::Uuid::new_v4().simple().to_string();
        write_private(path, value.as_bytes())?;
        tracing::info!("generated a new access token in {}", path.display());
        Ok(Self::new(value))
    }

    fn new(value: String) -> Self {
        Self { value }
    }

    /// The token itself, for the pairing link.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether `candidate` is the token. Every byte is compared whatever the first difference,
    /// so the time taken tells nothing of how much of a guess was right; only a guess of the
    /// wrong length is refused at once (generated tokens are 32 characters, and say so).
    pub fn matches(&self, candidate: &str) -> bool {
        let (token, candidate) = (self.value.as_bytes(), candidate.as_bytes());
        token.len() == candidate.len()
            && token
                .iter()
                .zip(candidate)
                .fold(0u8, |differences, (a, b)| differences | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_generated_once_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Token::load_or_create(dir.path(), None).unwrap();
        let again = Token::load_or_create(dir.path(), None).unwrap();
        assert_eq!(first.value(), again.value());
        assert_eq!(first.value().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_given_token_wins_and_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let token = Token::load_or_create(dir.path(), Some("s3cret")).unwrap();
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cret "));
        assert!(!token.matches(""));
        assert!(!dir.path().join("token").exists());
    }
}
