//! The first load of the app on a phone: everything `index.html` pulls in (wasm, JS, CSS, icon,
//! the manifest and the service worker), as the relay serves it brotli-compressed, must stay
//! within 200 KB. Prints the figures.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::Path;

use testkit::browser::dist_dir;

/// The budget for the whole first load, brotli-compressed, in bytes.
const BUDGET: u64 = 200_000;

/// The files `index.html` references (`/name.ext`, quoted or not, in a script's template
/// strings too).
fn referenced(index: &str, dist: &Path) -> BTreeSet<String> {
    index
        .split(|c: char| {
            c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '=' | '>' | '<' | '(' | ')')
        })
        .filter_map(|token| token.strip_prefix('/'))
        .filter(|name| !name.is_empty() && dist.join(name).is_file())
        .map(str::to_owned)
        .collect()
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the build writes .br copies: scripts/test does)",
                path.display()
            )
        })
        .len()
}

#[test]
fn the_whole_first_load_is_at_most_200_kb_brotli() {
    let dist = dist_dir();
    let index = std::fs::read_to_string(dist.join("index.html")).unwrap();
    let files = referenced(&index, &dist);
    for kind in [".wasm", ".js", ".css"] {
        assert!(
            files.iter().any(|f| f.ends_with(kind)),
            "index.html loads no {kind}: {files:?}"
        );
    }
    let mut total = 0;
    for name in std::iter::once("index.html".to_owned()).chain(files) {
        let raw = size(&dist.join(&name));
        let brotli = size(&dist.join(format!("{name}.br")));
        println!("{name}: {raw} bytes, {brotli} brotli");
        total += brotli;
    }
    println!("first load: {total} bytes brotli (budget {BUDGET})");
    assert!(
        total <= BUDGET,
        "the first load is {total} bytes brotli, over the {BUDGET} budget"
    );
}
