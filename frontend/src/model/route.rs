//! Where the app is: kept in the URL's hash, so reloads and the back button work without the
//! server knowing the app's pages.

/// A page of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The workflow library (the start page).
    Library,
    /// One workflow's form.
    Workflow(String),
    /// This device's jobs.
    Jobs,
    /// This device's images.
    Gallery,
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'(' | b')') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Route {
    /// Reads a `location.hash` ("#/w/Portrait%20v2").
    pub fn parse(hash: &str) -> Self {
        let path = hash.trim_start_matches('#').trim_start_matches('/');
        match path.split_once('/') {
            Some(("w", name)) if !name.is_empty() => Self::Workflow(decode(name)),
            _ => match path {
                "jobs" => Self::Jobs,
                "gallery" => Self::Gallery,
                _ => Self::Library,
            },
        }
    }

    /// The hash for this route.
    pub fn hash(&self) -> String {
        match self {
            Self::Library => "#/".to_owned(),
            Self::Workflow(name) => format!("#/w/{}", encode(name)),
            Self::Jobs => "#/jobs".to_owned(),
            Self::Gallery => "#/gallery".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_round_trip_through_the_hash() {
        for route in [
            Route::Library,
            Route::Jobs,
            Route::Gallery,
            Route::Workflow("Portrait upscale (v2)".into()),
            Route::Workflow("été/100%".into()),
        ] {
            assert_eq!(Route::parse(&route.hash()), route);
        }
    }

    #[test]
    fn anything_unknown_is_the_library() {
        assert_eq!(Route::parse(""), Route::Library);
        assert_eq!(Route::parse("#/nowhere"), Route::Library);
        assert_eq!(Route::parse("#/w/"), Route::Library);
    }
}
