//! The markup of what a job made: a picture, a video or a sound with its player, a text, or a
//! named download, written as HTML with every value escaped.
//!
//! One `inner_html` per output instead of a view per kind keeps the app within its first-load
//! budget (each distinct view costs about a kilobyte of wasm). Tags and attribute names are
//! constants here; everything that comes from ComfyUI (file names, texts) goes through
//! [`escape`], so no output can add markup of its own.

use shared::comfy::Output;
use shared::html::escape;

use shared::api::view_url;

/// The constant attributes of a video or sound player.
const PLAYER: &str = " controls playsinline preload=\"metadata\"";

/// `output` of job `job` in full, styled by `class` and found by tests as `test_id` (both
/// constants of the caller); a picture links to itself full size when `linked`.
pub fn full(output: &Output, job: &str, class: &str, test_id: &str, linked: bool) -> String {
    let media = output.media();
    let (tag, flags, class, file) = match output {
        Output::Text(text) => {
            // index.html's click handler copies the text before a `data-copy` button.
            return format!(
                "<pre class=\"output-text\" data-testid=\"{test_id}\" data-media=\"text\">{}</pre>\
                 <button type=\"button\" class=\"button small secondary\" data-copy>Copy</button>",
                escape(text)
            );
        }
        Output::Video(file) => ("video", PLAYER, class, file),
        Output::Audio(file) => ("audio", PLAYER, class, file),
        Output::File(file) => ("a", "", "button secondary", file),
        Output::Image(file) | Output::Animated(file) => ("img", "", class, file),
    };
    let (url, name) = (escape(&view_url(file, Some(job))), escape(&file.filename));
    let head =
        format!("<{tag}{flags} class=\"{class}\" data-testid=\"{test_id}\" data-media=\"{media}\"");
    match output {
        Output::File(_) => format!("{head} href=\"{url}\" download=\"{name}\">Download {name}</a>"),
        Output::Video(_) | Output::Audio(_) => {
            format!("{head} src=\"{url}\" aria-label=\"{name}\"></{tag}>")
        }
        _ if linked => format!(
            "<a href=\"{url}\" target=\"_blank\" rel=\"noopener\">{head} alt=\"{name}\" src=\"{url}\" loading=\"lazy\"></a>"
        ),
        _ => format!("{head} alt=\"{name}\" src=\"{url}\" loading=\"lazy\">"),
    }
}

/// A gallery tile's face for `output` of job `job`: the picture, a video's first frame with a
/// play mark, or the kind's mark and the file's name or the text's start.
pub fn tile(output: &Output, job: &str) -> String {
    let label = escape(&label(output));
    let url = output
        .file()
        .map(|file| escape(&view_url(file, Some(job))))
        .unwrap_or_default();
    let mark = match output {
        Output::Image(_) | Output::Animated(_) => {
            return format!("<img alt=\"{label}\" src=\"{url}\" loading=\"lazy\">");
        }
        Output::Video(_) => {
            return format!(
                "<video muted playsinline preload=\"metadata\" src=\"{url}\"></video>\
                 <span class=\"tile-mark\" aria-hidden=\"true\">▶</span>"
            );
        }
        Output::Audio(_) => "♪",
        Output::Text(_) => "¶",
        Output::File(_) => "⬇",
    };
    format!("<span class=\"tile-name\"><b aria-hidden=\"true\">{mark}</b> {label}</span>")
}

/// What a tile names: the file, or the start of a text.
pub fn label(output: &Output) -> String {
    match output {
        Output::Text(text) => text.chars().take(60).collect(),
        other => other.file().map(|f| f.filename.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::comfy::ImageRef;

    fn file(name: &str) -> ImageRef {
        ImageRef {
            filename: name.to_owned(),
            subfolder: "video".to_owned(),
            kind: "output".to_owned(),
        }
    }

    #[test]
    fn each_kind_is_its_element_with_its_player() {
        let video = full(
            &Output::Video(file("v.mp4")),
            "j1",
            "result",
            "job-output",
            true,
        );
        assert_eq!(
            video,
            "<video controls playsinline preload=\"metadata\" class=\"result\" \
             data-testid=\"job-output\" data-media=\"video\" \
             src=\"/view?filename=v.mp4&amp;subfolder=video&amp;type=output&amp;job=j1\" \
             aria-label=\"v.mp4\"></video>"
        );
        // Each kind: linked or not, how it starts, and what it must hold.
        let cases = [
            (
                Output::Audio(file("a.flac")),
                true,
                "<audio controls ",
                "></audio>",
            ),
            (
                Output::Animated(file("a.webp")),
                true,
                "<a href=\"/view?filename=a.webp",
                "data-media=\"animated\"",
            ),
            (
                Output::Image(file("p.png")),
                false,
                "<img ",
                "loading=\"lazy\">",
            ),
            (
                Output::File(file("x.latent")),
                true,
                "<a class=\"button secondary\"",
                "download=\"x.latent\">Download x.latent</a>",
            ),
            (
                Output::Text("a\nb".into()),
                true,
                "<pre class=\"output-text\" data-testid=\"job-output\" data-media=\"text\">",
                ">a\nb</pre><button type=\"button\" class=\"button small secondary\" data-copy>Copy</button>",
            ),
        ];
        for (output, linked, start, holds) in cases {
            let markup = full(&output, "j1", "result", "job-output", linked);
            assert!(
                markup.starts_with(start) && markup.contains(holds),
                "{markup}"
            );
        }
    }

    #[test]
    fn nothing_from_comfyui_can_add_markup() {
        // Whatever a name or a text holds, the markup has exactly the tags, quotes and
        // attributes it has for a plain one.
        let hostile = "\"><script>alert(1)</script><img src=x onerror='x'>&";
        let kinds: [fn(&str) -> Output; 6] = [
            |t| Output::Text(t.into()),
            |t| Output::Image(file(t)),
            |t| Output::Animated(file(t)),
            |t| Output::Video(file(t)),
            |t| Output::Audio(file(t)),
            |t| Output::File(file(t)),
        ];
        let structure = |markup: String| -> String {
            markup
                .chars()
                .filter(|c| matches!(c, '<' | '>' | '"' | '\''))
                .collect()
        };
        for kind in kinds {
            let (plain, attack) = (kind("plain"), kind(hostile));
            assert_eq!(
                structure(full(&attack, "j1", "c", "t", true)),
                structure(full(&plain, "j1", "c", "t", true))
            );
            assert_eq!(
                structure(tile(&attack, "j1")),
                structure(tile(&plain, "j1"))
            );
        }
    }

    #[test]
    fn tiles_show_a_picture_a_frame_or_a_named_mark() {
        assert!(tile(&Output::Image(file("p.png")), "j1").starts_with("<img alt=\"p.png\""));
        let video = tile(&Output::Video(file("v.mp4")), "j1");
        assert!(
            video.starts_with("<video muted") && video.contains("▶"),
            "{video}"
        );
        let text = "t".repeat(100);
        let tile_text = tile(&Output::Text(text.clone()), "j1");
        assert!(
            tile_text.contains(&format!("</b> {}</span>", "t".repeat(60))),
            "{tile_text}"
        );
        assert!(tile(&Output::Audio(file("s.flac")), "j1").contains("♪</b> s.flac"));
    }
}
