//! Recorded workflows and test images, embedded so the double and tests work from anywhere.

use std::path::PathBuf;

/// The classic SD 1.5 text-to-image `workflow_api.json` (two prompt texts).
pub const SD15_TXT2IMG: &str = include_str!("../fixtures/comfyui/workflows/sd15_txt2img.json");
/// LoadImage → SlowProgress → ImageInvert → SaveImage: the workflow the runs were recorded with.
pub const INVERT_SLOW: &str = include_str!("../fixtures/comfyui/workflows/invert_slow.json");
/// EmptyImage → PreviewImage + SaveImage.
pub const EMPTY_IMAGE: &str = include_str!("../fixtures/comfyui/workflows/empty_image.json");
/// EmptyImage ×2 → ImageCompositeMasked → SaveImage: has a BOOLEAN input (`resize_source`).
pub const COMPOSITE_BOOLEAN: &str = include_str!("../fixtures/workflows/composite_boolean.json");
/// A workflow saved in the editor's UI format, which ComfyUI cannot run.
pub const UI_FORMAT: &str = include_str!("../fixtures/comfyui/workflows/ui_format_not_api.json");

/// A 64x64 PNG the double serves for every output image.
pub const OUTPUT_PNG: &[u8] = include_bytes!("../fixtures/output.png");
/// A 32x24 PNG to upload as a phone picture.
pub const PHONE_PNG: &[u8] = include_bytes!("../fixtures/phone.png");

/// A `POST /prompt` body: `workflow` (API-format text) for the socket of `client_id`.
pub fn prompt_body(workflow: &str, client_id: &str) -> serde_json::Value {
    let workflow: serde_json::Value = serde_json::from_str(workflow).expect("the fixture is JSON");
    serde_json::json!({ "prompt": workflow, "client_id": client_id })
}

/// The start of a PNG: [`PHONE_PNG`]'s signature and header, then the head of an ancillary
/// chunk of `data_len` bytes, whose data the caller sends (a huge upload, say).
pub fn png_head_with_chunk(data_len: u32) -> Vec<u8> {
    // Signature (8) and IHDR (25): the first chunk of every PNG.
    let mut png = PHONE_PNG[..33].to_vec();
    png.extend_from_slice(&data_len.to_be_bytes());
    png.extend_from_slice(b"zzZz");
    png
}

/// [`PHONE_PNG`] grown to `total` bytes by an ancillary chunk of zeros: still a valid PNG.
pub fn png_padded_to(total: usize) -> Vec<u8> {
    // The chunk's own framing: length, type and CRC.
    let data_len = total.saturating_sub(PHONE_PNG.len() + 12);
    let mut png = PHONE_PNG[..PHONE_PNG.len() - 12].to_vec();
    let mut chunk = b"zzZz".to_vec();
    chunk.resize(4 + data_len, 0);
    png.extend_from_slice(
        &u32::try_from(data_len)
            .expect("a small chunk")
            .to_be_bytes(),
    );
    png.extend_from_slice(&chunk);
    png.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    png.extend_from_slice(&PHONE_PNG[PHONE_PNG.len() - 12..]);
    png
}

/// The path of a file under `tests/fixtures/`, for a browser's file chooser.
pub fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative)
}

/// One API workflow with an output node of every recorded kind, as ComfyUI 0.3.64 ran them
/// (`fixtures/comfyui/outputs/`): a text (PreviewAny), an animated WebP, a video (SaveVideo),
/// sounds (SaveAudio, PreviewAudio) and a latent file; each recording's node ids are moved to
/// their own hundred (`101`, `201`, ...).
pub fn every_output_kind() -> String {
    let recordings = [
        include_str!("../fixtures/comfyui/outputs/text.json"),
        include_str!("../fixtures/comfyui/outputs/animated_webp.json"),
        include_str!("../fixtures/comfyui/outputs/video.json"),
        include_str!("../fixtures/comfyui/outputs/audio.json"),
        include_str!("../fixtures/comfyui/outputs/latent.json"),
    ];
    let mut workflow = serde_json::Map::new();
    for (at, text) in recordings.into_iter().enumerate() {
        let recording: serde_json::Value = serde_json::from_str(text).expect("JSON");
        let moved = |id: &str| format!("{}{id:0>2}", at + 1);
        for (id, node) in recording["prompt"].as_object().expect("a prompt") {
            let mut node = node.clone();
            for input in node["inputs"].as_object_mut().expect("inputs").values_mut() {
                if let Some(from) = input.get(0).and_then(|v| v.as_str()).map(str::to_owned)
                    && input.get(1).is_some_and(serde_json::Value::is_u64)
                {
                    input[0] = moved(&from).into();
                }
            }
            workflow.insert(moved(id), node);
        }
    }
    serde_json::Value::Object(workflow).to_string()
}
