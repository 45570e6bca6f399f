//! What a run made, by kind: ComfyUI's `executed` outputs read into what the app shows.
//!
//! Shapes as recorded from ComfyUI 0.3.64 (`tests/fixtures/comfyui/outputs/`): pictures under
//! `images`; SaveAnimatedWEBP/PNG's animations under `images` with `animated: [true]`, and
//! SaveVideo's mp4 and SaveWEBM's webm there too; sounds under `audio`; PreviewAny's texts
//! under `text`; SaveLatent's files under `latents`. Custom nodes add keys of their own
//! (VideoHelperSuite's `gifs`): any list of `{filename, subfolder, type}` is a file, and its
//! name says what it is. Preview3D's `result` is `[path, camera]`, the path a 3D model's under
//! `output/` (as ComfyUI's frontend loads it): offered as a download. Lists of anything else (a
//! camera's settings) are left out.

use serde::{Deserialize, Serialize};

use super::ws::{ImageRef, NodeOutput};

/// The longest text output kept, in characters; a longer one is cut with a note.
const MAX_TEXT_CHARS: usize = 20_000;

/// One thing a run made, with what the app needs to show it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// A still picture.
    Image(ImageRef),
    /// A moving picture an `<img>` plays (animated WebP, PNG or GIF).
    Animated(ImageRef),
    /// A video.
    Video(ImageRef),
    /// A sound.
    Audio(ImageRef),
    /// Any other file (a latent, a model): offered as a download.
    File(ImageRef),
    /// Text a node showed, at most 20,000 characters (a longer one is cut with a note).
    Text(String),
}

/// File endings of videos.
const VIDEO: [&str; 6] = ["mp4", "webm", "mov", "mkv", "m4v", "avi"];
/// File endings of sounds.
const AUDIO: [&str; 7] = ["flac", "mp3", "wav", "ogg", "opus", "m4a", "aac"];
/// File endings of pictures.
const PICTURE: [&str; 8] = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "avif", "apng"];
/// File endings of the 3D models Preview3D shows.
const MODEL_3D: [&str; 6] = ["glb", "gltf", "obj", "fbx", "stl", "ply"];

/// A file name's ending, lower case.
fn ending(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, ending)| ending.to_ascii_lowercase())
        .unwrap_or_default()
}

impl Output {
    /// The file to fetch with `/view`; texts have none.
    pub fn file(&self) -> Option<&ImageRef> {
        match self {
            Self::Image(file)
            | Self::Animated(file)
            | Self::Video(file)
            | Self::Audio(file)
            | Self::File(file) => Some(file),
            Self::Text(_) => None,
        }
    }

    /// Its kind's name, as the wire says it: `image`, `animated`, `video`, `audio`, `file`
    /// or `text`.
    pub fn media(&self) -> &'static str {
        match self {
            Self::Image(_) => "image",
            Self::Animated(_) => "animated",
            Self::Video(_) => "video",
            Self::Audio(_) => "audio",
            Self::File(_) => "file",
            Self::Text(_) => "text",
        }
    }

    /// A file named in an output list other than `images` and `audio`: what its name says.
    fn by_name(file: ImageRef) -> Self {
        let ending = ending(&file.filename);
        let is = |endings: &[&str]| endings.contains(&ending.as_str());
        if is(&VIDEO) {
            Self::Video(file)
        } else if is(&AUDIO) {
            Self::Audio(file)
        } else if is(&PICTURE) {
            Self::Image(file)
        } else {
            Self::File(file)
        }
    }

    /// Preview3D's model, `subfolder/name` under `output/`, as a download; `None` for a path
    /// that is no 3D model.
    fn model_3d(path: &str) -> Option<Self> {
        if !MODEL_3D.contains(&ending(path).as_str()) {
            return None;
        }
        let (subfolder, filename) = path.rsplit_once('/').unwrap_or(("", path));
        Some(Self::File(ImageRef {
            filename: filename.to_owned(),
            subfolder: subfolder.to_owned(),
            kind: "output".to_owned(),
        }))
    }

    /// A text output, cut to [`MAX_TEXT_CHARS`].
    fn text(text: &str) -> Self {
        let text = match text.char_indices().nth(MAX_TEXT_CHARS) {
            Some((cut, _)) => format!("{}\n… (cut: the text is longer)", &text[..cut]),
            None => text.to_owned(),
        };
        Self::Text(text)
    }
}

impl NodeOutput {
    /// Everything this output holds, by kind: `images` first, then the other lists.
    pub fn outputs(&self) -> Vec<Output> {
        let animated = |at: usize| {
            self.other
                .get("animated")
                .and_then(serde_json::Value::as_array)
                .and_then(|flags| flags.get(at).or(flags.first()))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
        };
        let mut outputs: Vec<Output> = self
            .images
            .iter()
            .enumerate()
            .map(|(at, image)| match Output::by_name(image.clone()) {
                Output::Image(image) if animated(at) => Output::Animated(image),
                Output::File(image) => Output::Image(image),
                by_name => by_name,
            })
            .collect();
        for (key, value) in &self.other {
            let Some(items) = value.as_array() else {
                continue;
            };
            for item in items {
                let output = match (key.as_str(), item) {
                    ("text", serde_json::Value::String(text)) => Output::text(text),
                    ("result", serde_json::Value::String(path)) => {
                        let Some(model) = Output::model_3d(path) else {
                            continue;
                        };
                        model
                    }
                    (_, serde_json::Value::Object(_)) => {
                        let Ok(file) = serde_json::from_value::<ImageRef>(item.clone()) else {
                            continue;
                        };
                        match key.as_str() {
                            "audio" => Output::Audio(file),
                            _ => Output::by_name(file),
                        }
                    }
                    _ => continue,
                };
                outputs.push(output);
            }
        }
        outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The `executed` outputs a recording holds, read from its websocket messages.
    fn recorded(kind: &str) -> Vec<NodeOutput> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/comfyui/outputs")
            .join(format!("{kind}.json"));
        let recording: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        recording["ws"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|message| message["type"] == "executed")
            .map(|message| serde_json::from_value(message["data"]["output"].clone()).unwrap())
            .collect()
    }

    /// Each output's kind and its file name or text.
    fn kinds(kind: &str) -> Vec<(String, String)> {
        recorded(kind)
            .iter()
            .flat_map(NodeOutput::outputs)
            .map(|output| {
                let media = output.media().to_owned();
                let name = match &output {
                    Output::Text(text) => text.clone(),
                    other => other.file().unwrap().filename.clone(),
                };
                (media, name)
            })
            .collect()
    }

    #[test]
    fn every_recorded_output_kind_is_read_as_what_it_is() {
        // A preview's temp file has a random name: "" stands for it.
        let cases: [(&str, &[(&str, &str)]); 9] = [
            ("text", &[("text", "hello\nworld")]),
            ("animated_webp", &[("animated", "rec_webp_00001_.webp")]),
            ("animated_png", &[("animated", "rec_apng_00001_.png")]),
            ("video", &[("video", "rec_video_00001_.mp4")]),
            ("webm", &[("video", "rec_webm_00001_.webm")]),
            (
                "audio",
                &[("audio", ""), ("audio", "rec_audio_00001_.flac")],
            ),
            (
                "audio_mp3_opus",
                &[
                    ("audio", "rec_opus_00001_.opus"),
                    ("audio", "rec_mp3_00001_.mp3"),
                ],
            ),
            ("latent", &[("file", "rec_latent_00001_.latent")]),
            ("preview3d", &[("file", "rec_cube.obj")]),
        ];
        for (kind, expected) in cases {
            let found: Vec<(String, String)> = kinds(kind)
                .into_iter()
                .map(|(media, name)| {
                    let temp = name.starts_with("ComfyUI_temp_");
                    (media, if temp { String::new() } else { name })
                })
                .collect();
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(media, name)| ((*media).to_owned(), (*name).to_owned()))
                .collect();
            assert_eq!(found, expected, "{kind}");
        }
    }

    #[test]
    fn a_mask_preview_is_a_still_picture_in_temp() {
        let outputs: Vec<Output> = recorded("mask_preview")
            .iter()
            .flat_map(NodeOutput::outputs)
            .collect();
        assert!(matches!(&outputs[..], [Output::Image(file)] if file.kind == "temp"));
    }

    #[test]
    fn a_custom_nodes_list_of_files_is_read_by_file_name() {
        let output: NodeOutput = serde_json::from_value(serde_json::json!({
            "gifs": [
                {"filename": "clip_00001.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4"},
                {"filename": "loop_00001.GIF", "subfolder": "", "type": "output", "format": "image/gif"}
            ],
            "result": ["3d/model.glb", null],
            "animated": [true]
        }))
        .unwrap();
        let outputs = output.outputs();
        assert!(
            matches!(&outputs[..], [Output::Video(a), Output::Image(b), Output::File(model)]
            if a.filename == "clip_00001.mp4" && b.filename == "loop_00001.GIF"
                && model.filename == "model.glb" && model.subfolder == "3d" && model.kind == "output")
        );
    }

    #[test]
    fn a_preview3d_result_that_is_no_model_is_left_out() {
        for result in [
            serde_json::json!(["notes.txt", null]),
            serde_json::json!([{"position": {"x": 0}}]),
            serde_json::json!([]),
        ] {
            let output: NodeOutput =
                serde_json::from_value(serde_json::json!({ "result": result })).unwrap();
            assert_eq!(output.outputs(), [], "{result}");
        }
    }

    #[test]
    fn a_long_text_is_cut_with_a_note_and_keeps_whole_characters() {
        let long = "é".repeat(MAX_TEXT_CHARS + 5);
        let Output::Text(text) = Output::text(&long) else {
            panic!("a text")
        };
        assert!(text.starts_with(&"é".repeat(MAX_TEXT_CHARS)));
        assert!(text.ends_with("(cut: the text is longer)"));
        let short = Output::text("short");
        assert_eq!(short, Output::Text("short".into()));
    }

    #[test]
    fn an_output_is_its_kind_around_its_file_on_the_wire() {
        let video = Output::Video(ImageRef {
            filename: "v.mp4".into(),
            subfolder: "video".into(),
            kind: "output".into(),
        });
        let wire = serde_json::to_value(&video).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({"video": {"filename": "v.mp4", "subfolder": "video", "type": "output"}})
        );
        assert_eq!(serde_json::from_value::<Output>(wire).unwrap(), video);
        let text = serde_json::to_value(Output::Text("hi".into())).unwrap();
        assert_eq!(text, serde_json::json!({"text": "hi"}));
        assert_eq!(video.media(), "video");
    }
}
