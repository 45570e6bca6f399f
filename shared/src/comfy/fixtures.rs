//! Test access to the recorded ComfyUI traffic in `tests/fixtures/comfyui/`.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/comfyui")
}

/// Every line of every recorded WebSocket transcript, with the file it came from.
fn ws_lines() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("ws"))
        .expect("tests/fixtures/comfyui/ws exists")
        .map(|entry| entry.expect("readable dir").path())
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            lines.push((name.clone(), serde_json::from_str(line).unwrap()));
        }
    }
    lines
}

/// Every recorded text frame, in both directions.
pub fn ws_text_frames() -> Vec<(String, Value)> {
    ws_lines()
        .into_iter()
        .filter_map(|(name, line)| line.get("text").cloned().map(|text| (name, text)))
        .collect()
}

/// Every recorded binary frame: its bytes and the recorder's decoding of it.
pub fn ws_binary_frames() -> Vec<(String, Vec<u8>, Value)> {
    ws_lines()
        .into_iter()
        .filter_map(|(name, line)| {
            let b64 = line.get("binary_b64")?.as_str()?.to_owned();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("recorded frames are base64");
            Some((name, bytes, line))
        })
        .collect()
}

/// One recorded HTTP exchange, `http/NAME.json`.
pub fn http(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("http").join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("http/{name}.json: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// One recorded workflow, `workflows/NAME.json`, as text.
pub fn workflow_text(name: &str) -> String {
    std::fs::read_to_string(root().join("workflows").join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("workflows/{name}.json: {e}"))
}

/// The same JSON with every number as an f64, so `1` and `1.0` compare equal.
pub fn numbers_as_f64(value: Value) -> Value {
    match value {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_f64(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The recorded `GET /object_info` (497 classes).
pub fn object_info() -> Value {
    let gz =
        std::fs::read(root().join("object_info_full.json.gz")).expect("object_info is recorded");
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut json)
        .expect("gzip");
    serde_json::from_str(&json).expect("JSON")
}
