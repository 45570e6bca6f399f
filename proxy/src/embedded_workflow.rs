//! The workflow ComfyUI saves inside the pictures and sounds it makes, read as the file
//! streams in.
//!
//! ComfyUI's SaveImage writes PNG text chunks: `prompt` (the API-format workflow exactly as it
//! ran) and `workflow` (the editor's graph); SaveAnimatedWEBP writes the same two into the
//! WebP's EXIF, as ASCII tag 0x0110 `prompt:{...}` and 0x010F `workflow:{...}`; SaveAudio
//! writes them as FLAC Vorbis comments `prompt=...` and `workflow=...`; SaveVideo writes them
//! as MP4 metadata keys (`moov/udta/meta`, ffmpeg's `use_metadata_tags`), SaveWEBM as Matroska
//! simple tags `PROMPT` and `WORKFLOW`, and VideoHelperSuite as one `comment` holding both.
//! Other tools use iTXt or zTXt chunks, so those are read too. Only the parts that can hold a
//! workflow are kept, each at most [`MAX_TEXT_BYTES`]; pixel, sound and video data stream past,
//! so a large file costs no memory.

use axum::body::{Body, BodyDataStream};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt as _;

/// The largest text chunk kept (a workflow's JSON).
pub const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;
/// The largest file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
const EBML_MAGIC: &[u8; 4] = b"\x1a\x45\xdf\xa3";

/// Which format a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A PNG.
    Png,
    /// A WebP (RIFF container).
    Webp,
    /// A FLAC sound.
    Flac,
    /// An MP4 or QuickTime video (ISO base media boxes).
    Mp4,
    /// A WebM or Matroska video (EBML elements).
    Matroska,
}

impl Format {
    /// The format of a file starting with `head` (at least 12 bytes to tell a WebP).
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(PNG_SIGNATURE) {
            Some(Self::Png)
        } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else if head.starts_with(b"fLaC") {
            Some(Self::Flac)
        } else if head.get(4..8) == Some(b"ftyp") {
            Some(Self::Mp4)
        } else if head.starts_with(EBML_MAGIC) {
            Some(Self::Matroska)
        } else {
            None
        }
    }
}

/// What a file holds, as JSON text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// The API-format workflow that made it.
    pub prompt: Option<String>,
    /// The editor's graph.
    pub workflow: Option<String>,
}

/// Why a file's workflow could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmbeddedError {
    /// The file's structure is broken.
    #[error("This file is damaged or cut short: {0}.")]
    Damaged(&'static str),
    /// A text chunk is larger than a workflow can be.
    #[error("This file holds a text larger than {} MB; it is not a workflow.", MAX_TEXT_BYTES >> 20)]
    TextTooLarge,
    /// The whole file is larger than a file is read.
    #[error("This file is larger than {} MB.", MAX_FILE_BYTES >> 20)]
    TooLarge,
    /// The body could not be read.
    #[error("The file did not arrive whole: {0}")]
    Body(String),
}

/// A request body read in order, a few bytes at a time, with nothing kept that was consumed.
struct Stream {
    body: BodyDataStream,
    buffered: BytesMut,
    read: u64,
    ended: bool,
}

impl Stream {
    /// Buffers `n` bytes; false if the body ends first.
    async fn fill(&mut self, n: usize) -> Result<bool, EmbeddedError> {
        while self.buffered.len() < n && !self.ended {
            match self.body.next().await {
                Some(Ok(data)) => {
                    self.read += data.len() as u64;
                    if self.read > MAX_FILE_BYTES {
                        return Err(EmbeddedError::TooLarge);
                    }
                    self.buffered.extend_from_slice(&data);
                }
                Some(Err(error)) => return Err(EmbeddedError::Body(error.to_string())),
                None => self.ended = true,
            }
        }
        Ok(self.buffered.len() >= n)
    }

    /// The next `n` bytes.
    async fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, EmbeddedError> {
        if !self.fill(n).await? {
            return Err(EmbeddedError::Damaged(what));
        }
        Ok(self.buffered.split_to(n).freeze())
    }

    /// The next `n` bytes, a part that may hold a workflow: at most [`MAX_TEXT_BYTES`].
    async fn take_text(&mut self, n: usize, what: &'static str) -> Result<Bytes, EmbeddedError> {
        if n > MAX_TEXT_BYTES {
            return Err(EmbeddedError::TextTooLarge);
        }
        self.take(n, what).await
    }

    /// How many bytes of the file have been consumed.
    fn position(&self) -> u64 {
        self.read - self.buffered.len() as u64
    }

    /// Whether the file has ended here.
    async fn at_end(&mut self) -> Result<bool, EmbeddedError> {
        Ok(!self.fill(1).await?)
    }

    /// Passes over the next `n` bytes without keeping them.
    async fn skip(&mut self, mut n: u64, what: &'static str) -> Result<(), EmbeddedError> {
        while n > 0 {
            if !self.fill(1).await? {
                return Err(EmbeddedError::Damaged(what));
            }
            let here = n.min(self.buffered.len() as u64) as usize;
            self.buffered.advance(here);
            n -= here as u64;
        }
        Ok(())
    }
}

/// Reads the workflow out of a file of `format` arriving as `body` (whose first bytes are
/// `head`, already read to tell the format).
pub async fn read(format: Format, head: Bytes, body: Body) -> Result<Embedded, EmbeddedError> {
    let mut stream = Stream {
        body: body.into_data_stream(),
        read: head.len() as u64,
        buffered: BytesMut::from(&head[..]),
        ended: false,
    };
    match format {
        Format::Png => read_png(&mut stream).await,
        Format::Webp => read_webp(&mut stream).await,
        Format::Flac => read_flac(&mut stream).await,
        Format::Mp4 => read_mp4(&mut stream).await,
        Format::Matroska => read_matroska(&mut stream).await,
    }
}

/// MP4 boxes: `moov/udta/meta` holds `keys` (the names, for ffmpeg's `use_metadata_tags`) and
/// `ilst`, whose items are named by a key's 1-based index or an iTunes code (`©cmt`, the
/// comment), each holding a `data` box. Everything else, the frames above all, is skipped.
async fn read_mp4(stream: &mut Stream) -> Result<Embedded, EmbeddedError> {
    const CUT: &str = "a box is cut short";
    let mut found = Embedded::default();
    let mut keys: Vec<String> = Vec::new();
    // The boxes entered, innermost last, each with where it ends.
    let mut parents: Vec<([u8; 4], u64)> = Vec::new();
    loop {
        let start = stream.position();
        parents.retain(|&(_, end)| end > start);
        if stream.at_end().await? {
            return Ok(found);
        }
        let head = stream.take(8, CUT).await?;
        let kind: [u8; 4] = [head[4], head[5], head[6], head[7]];
        let size = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            1 => u64::from_be_bytes(stream.take(8, CUT).await?[..].try_into().expect("8 bytes")),
            // To the end of the file: nothing after it to look for.
            0 if !matches!(kind, MP4_MOOV | MP4_UDTA | MP4_META) => return Ok(found),
            0 => u64::MAX - start,
            size => u64::from(size),
        };
        let end = start.saturating_add(size);
        let inside = end
            .checked_sub(stream.position())
            .ok_or(EmbeddedError::Damaged("a box is smaller than its header"))?;
        if parents
            .last()
            .is_some_and(|&(_, parent_end)| end > parent_end)
        {
            return Err(EmbeddedError::Damaged("a box overruns the box it is in"));
        }
        let parent = parents.last().map(|&(kind, _)| kind);
        let grandparent = parents.iter().rev().nth(1).map(|&(kind, _)| kind);
        match (grandparent, parent, kind) {
            (_, None, MP4_MOOV) | (_, Some(MP4_MOOV), MP4_UDTA) | (_, Some(MP4_META), MP4_ILST) => {
                parents.push((kind, end));
            }
            (_, Some(MP4_UDTA), MP4_META) => {
                // A full box in MP4 (version and flags first), a plain one in QuickTime.
                if stream.fill(8).await? && &stream.buffered[4..8] != b"hdlr" {
                    stream.skip(4, CUT).await?;
                }
                parents.push((kind, end));
            }
            (_, Some(MP4_META), MP4_KEYS) => {
                keys = mp4_keys(&stream.take_text(inside as usize, CUT).await?)?;
            }
            (_, Some(MP4_ILST), _) => parents.push((kind, end)),
            (Some(MP4_ILST), Some(item), MP4_DATA) => {
                let data = stream.take_text(inside as usize, CUT).await?;
                let name = match item {
                    [0xA9, b'c', b'm', b't'] => Some("comment"),
                    index => (u32::from_be_bytes(index) as usize)
                        .checked_sub(1)
                        .and_then(|i| keys.get(i))
                        .map(String::as_str),
                };
                // Type and locale, then the value.
                if let (Some(name), Some(value)) = (name, data.get(8..)) {
                    found.keep(
                        &name.to_ascii_lowercase(),
                        String::from_utf8_lossy(value).into(),
                    );
                }
            }
            _ => stream.skip(inside, CUT).await?,
        }
    }
}

const MP4_MOOV: [u8; 4] = *b"moov";
const MP4_UDTA: [u8; 4] = *b"udta";
const MP4_META: [u8; 4] = *b"meta";
const MP4_KEYS: [u8; 4] = *b"keys";
const MP4_ILST: [u8; 4] = *b"ilst";
const MP4_DATA: [u8; 4] = *b"data";

/// A `keys` box's names: version and flags, a count, then each as size, namespace, name.
fn mp4_keys(data: &[u8]) -> Result<Vec<String>, EmbeddedError> {
    let damaged = || EmbeddedError::Damaged("its metadata keys are malformed");
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b) as usize)
    };
    let count = u32_at(4).ok_or_else(damaged)?;
    let mut at = 8;
    let mut keys = Vec::new();
    for _ in 0..count {
        let size = u32_at(at).ok_or_else(damaged)?;
        let name = data
            .get(at + 8..at.saturating_add(size))
            .ok_or_else(damaged)?;
        keys.push(String::from_utf8_lossy(name).into_owned());
        at += size.max(8);
    }
    Ok(keys)
}

/// Matroska elements: the `Segment`, its `Tags`, each `Tag` and `SimpleTag` are entered, a
/// `TagName` and the `TagString` after it kept; everything else, clusters of frames above
/// all, is skipped. A cluster of unknown size (a live stream) ends the reading.
async fn read_matroska(stream: &mut Stream) -> Result<Embedded, EmbeddedError> {
    const CUT: &str = "an element is cut short";
    const SEGMENT: u64 = 0x1853_8067;
    const TAGS: u64 = 0x1254_C367;
    const TAG: u64 = 0x7373;
    const SIMPLE_TAG: u64 = 0x67C8;
    const TAG_NAME: u64 = 0x45A3;
    const TAG_STRING: u64 = 0x4487;
    let mut found = Embedded::default();
    let mut name: Option<String> = None;
    while !stream.at_end().await? {
        let id = ebml_number(stream, 4, false).await?;
        let size = ebml_number(stream, 8, true).await?;
        match id {
            SEGMENT | TAGS | TAG => {}
            SIMPLE_TAG => name = None,
            TAG_NAME | TAG_STRING => {
                let size = usize::try_from(size).map_err(|_| EmbeddedError::TextTooLarge)?;
                let text = stream.take_text(size, CUT).await?;
                let text = String::from_utf8_lossy(&text).into_owned();
                if id == TAG_NAME {
                    name = Some(text.to_ascii_lowercase());
                } else if let Some(name) = name.take() {
                    found.keep(&name, text);
                }
            }
            _ if size == u64::MAX => return Ok(found),
            _ => stream.skip(size, CUT).await?,
        }
    }
    Ok(found)
}

/// An EBML variable-length number of at most `max_length` bytes: an element id as written
/// (its length marker kept), or a size without its marker (`u64::MAX` for "unknown").
async fn ebml_number(
    stream: &mut Stream,
    max_length: u32,
    is_size: bool,
) -> Result<u64, EmbeddedError> {
    let first = stream.take(1, "an element is cut short").await?[0];
    let length = first.leading_zeros() + 1;
    if length > max_length {
        return Err(EmbeddedError::Damaged("an element's header is malformed"));
    }
    let rest = stream
        .take(length as usize - 1, "an element is cut short")
        .await?;
    let marker = if is_size { 0x80u8 >> (length - 1) } else { 0 };
    let mut number = u64::from(first & !marker);
    let mut all_ones = number == u64::from(!marker & (0xFFu8 >> (length - 1)));
    for &byte in &rest[..] {
        number = number << 8 | u64::from(byte);
        all_ones &= byte == 0xFF;
    }
    Ok(if is_size && all_ones {
        u64::MAX
    } else {
        number
    })
}

async fn read_flac(stream: &mut Stream) -> Result<Embedded, EmbeddedError> {
    stream.skip(4, "no fLaC marker").await?;
    let mut found = Embedded::default();
    // Metadata blocks, then the sound, which is not read.
    loop {
        let head = stream.take(4, "a metadata block is cut short").await?;
        let (last, kind) = (head[0] & 0x80 != 0, head[0] & 0x7F);
        let length = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        if kind == 4 {
            let block = stream
                .take_text(length, "the comments are cut short")
                .await?;
            for (keyword, text) in vorbis_comments(&block)? {
                found.keep(&keyword.to_ascii_lowercase(), text);
            }
        } else {
            stream
                .skip(length as u64, "a metadata block is cut short")
                .await?;
        }
        if last {
            return Ok(found);
        }
    }
}

/// A Vorbis comment block's `KEY=value` pairs (lengths little-endian, after a vendor string).
fn vorbis_comments(block: &[u8]) -> Result<Vec<(String, String)>, EmbeddedError> {
    let damaged = || EmbeddedError::Damaged("its comments are malformed");
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = block.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let vendor = u32_at(0).ok_or_else(damaged)?;
    let mut at = 4usize.checked_add(vendor).ok_or_else(damaged)?;
    let count = u32_at(at).ok_or_else(damaged)?;
    at += 4;
    let mut comments = Vec::new();
    for _ in 0..count {
        let length = u32_at(at).ok_or_else(damaged)?;
        let comment = block
            .get(at + 4..(at + 4).saturating_add(length))
            .ok_or_else(damaged)?;
        at += 4 + length;
        if let Some((key, value)) = String::from_utf8_lossy(comment).split_once('=') {
            comments.push((key.to_owned(), value.to_owned()));
        }
    }
    Ok(comments)
}

async fn read_png(stream: &mut Stream) -> Result<Embedded, EmbeddedError> {
    stream
        .skip(PNG_SIGNATURE.len() as u64, "no signature")
        .await?;
    let mut found = Embedded::default();
    loop {
        let head = stream.take(8, "a chunk is cut short").await?;
        let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        if kind == b"IEND" {
            return Ok(found);
        }
        if matches!(kind, b"tEXt" | b"zTXt" | b"iTXt") {
            let data = stream
                .take_text(length, "a text chunk is cut short")
                .await?;
            if let Some((keyword, text)) = png_text(kind, &data)? {
                found.keep(&keyword, text);
            }
        } else {
            stream.skip(length as u64, "a chunk is cut short").await?;
        }
        stream.skip(4, "a chunk's checksum is missing").await?;
    }
}

/// A PNG text chunk's keyword and text (`None` for a compression it does not name).
fn png_text(kind: &[u8], data: &[u8]) -> Result<Option<(String, String)>, EmbeddedError> {
    let damaged = EmbeddedError::Damaged("a text chunk has no keyword");
    let split = data.iter().position(|&b| b == 0).ok_or(damaged)?;
    let (keyword, rest) = (latin1(&data[..split]), &data[split + 1..]);
    let text = match kind {
        b"tEXt" => latin1(rest),
        b"zTXt" => match rest.split_first() {
            Some((0, compressed)) => latin1(&inflate(compressed)?),
            _ => return Ok(None),
        },
        _ => {
            // iTXt: compressed flag, method, language\0, translated keyword\0, UTF-8 text.
            let [flag, method, rest @ ..] = rest else {
                return Err(EmbeddedError::Damaged("an iTXt chunk is cut short"));
            };
            let mut parts = rest.splitn(3, |&b| b == 0);
            let text = parts
                .nth(2)
                .ok_or(EmbeddedError::Damaged("an iTXt chunk is cut short"))?;
            let text = match (flag, method) {
                (0, _) => text.to_vec(),
                (1, 0) => inflate(text)?,
                _ => return Ok(None),
            };
            String::from_utf8_lossy(&text).into_owned()
        }
    };
    Ok(Some((keyword, text)))
}

/// zlib data inflated, at most [`MAX_TEXT_BYTES`].
fn inflate(compressed: &[u8]) -> Result<Vec<u8>, EmbeddedError> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_TEXT_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| EmbeddedError::Damaged("a compressed text does not inflate"))?;
    if out.len() > MAX_TEXT_BYTES {
        return Err(EmbeddedError::TextTooLarge);
    }
    Ok(out)
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

async fn read_webp(stream: &mut Stream) -> Result<Embedded, EmbeddedError> {
    stream.skip(12, "no RIFF header").await?;
    let mut found = Embedded::default();
    while stream.fill(1).await? {
        let head = stream.take(8, "a chunk is cut short").await?;
        let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        // Chunks are padded to an even length.
        let padding = (length % 2) as u64;
        if &head[..4] == b"EXIF" {
            let exif = stream
                .take_text(length, "the EXIF chunk is cut short")
                .await?;
            for (keyword, text) in exif_texts(&exif)? {
                found.keep(&keyword, text);
            }
        } else {
            stream.skip(length as u64, "a chunk is cut short").await?;
        }
        if stream.fill(1).await? {
            stream.skip(padding, "a chunk's padding is missing").await?;
        }
    }
    Ok(found)
}

/// The `key:text` values of IFD0's ASCII tags 0x010F and 0x0110, where ComfyUI writes them.
fn exif_texts(exif: &[u8]) -> Result<Vec<(String, String)>, EmbeddedError> {
    let damaged = || EmbeddedError::Damaged("its EXIF is malformed");
    let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let big_endian = match tiff.get(..2) {
        Some(b"MM") => true,
        Some(b"II") => false,
        _ => return Err(damaged()),
    };
    let u16_at = |at: usize| -> Option<usize> {
        let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(usize::from(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }))
    };
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        } as usize)
    };
    let ifd = u32_at(4).ok_or_else(damaged)?;
    let entries = u16_at(ifd).ok_or_else(damaged)?;
    let mut texts = Vec::new();
    for entry in (0..entries).map(|i| ifd + 2 + 12 * i) {
        let (Some(tag), Some(kind), Some(count)) =
            (u16_at(entry), u16_at(entry + 2), u32_at(entry + 4))
        else {
            return Err(damaged());
        };
        // ASCII (2) as Pillow writes a str, or UNDEFINED (7) bytes.
        if !matches!(tag, 0x010F | 0x0110) || !matches!(kind, 2 | 7) {
            continue;
        }
        let at = if count <= 4 {
            entry + 8
        } else {
            u32_at(entry + 8).ok_or_else(damaged)?
        };
        let value = tiff.get(at..at.saturating_add(count)).ok_or_else(damaged)?;
        let value = String::from_utf8_lossy(value.strip_suffix(b"\0").unwrap_or(value));
        if let Some((keyword, text)) = value.split_once(':') {
            texts.push((keyword.to_owned(), text.to_owned()));
        }
    }
    Ok(texts)
}

impl Embedded {
    fn keep(&mut self, keyword: &str, text: String) {
        match keyword {
            "prompt" => self.prompt = Some(text),
            "workflow" => self.workflow = Some(text),
            // VideoHelperSuite: {"prompt": "<the JSON as a string>", "workflow": {...}}.
            "comment" => {
                let Ok(serde_json::Value::Object(both)) = serde_json::from_str(&text) else {
                    return;
                };
                for (keyword, value) in both {
                    let text = match value {
                        serde_json::Value::String(text) => text,
                        value => value.to_string(),
                    };
                    if keyword != "comment" {
                        self.keep(&keyword, text);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/embedded")
            .join(name);
        std::fs::read(path).unwrap()
    }

    async fn read_all(bytes: Vec<u8>) -> Result<Embedded, EmbeddedError> {
        let format = Format::sniff(&bytes).expect("a known format");
        read(format, Bytes::new(), Body::from(bytes)).await
    }

    fn is_json_object(text: &Option<String>) -> bool {
        text.as_deref()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .is_some_and(|v| v.is_object())
    }

    #[tokio::test]
    async fn the_prompt_and_the_graph_come_out_of_every_kind_of_file_comfyui_saves() {
        for name in [
            "comfyui_saved.png",
            "comfyui_saved.webp",
            "comfyui_saved.flac",
            "comfyui_saved.mp4",
            "comfyui_saved.webm",
            "videohelpersuite_saved.mp4",
        ] {
            let found = read_all(fixture(name)).await.unwrap();
            assert!(is_json_object(&found.prompt), "{name}: {found:?}");
            assert!(is_json_object(&found.workflow), "{name}: {found:?}");
            assert!(
                found
                    .prompt
                    .unwrap()
                    .contains("\"class_type\": \"SaveImage\"")
            );
            assert!(found.workflow.unwrap().contains("\"links\""));
        }
        assert_eq!(
            read_all(fixture("no_workflow.png")).await.unwrap(),
            Embedded::default()
        );
    }

    #[tokio::test]
    async fn a_head_already_read_and_a_body_in_small_pieces_read_the_same() {
        let bytes = fixture("comfyui_saved.webp");
        let whole = read_all(bytes.clone()).await.unwrap();
        let pieces: Vec<Result<Bytes, std::io::Error>> = bytes[16..]
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body = Body::from_stream(futures_util::stream::iter(pieces));
        let head = Bytes::copy_from_slice(&bytes[..16]);
        assert_eq!(read(Format::Webp, head, body).await.unwrap(), whole);
    }

    #[tokio::test]
    async fn compressed_and_international_text_chunks_are_read() {
        let mut png = PNG_SIGNATURE.to_vec();
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut out = (data.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&crc32fast::hash(&[kind, data].concat()).to_be_bytes());
            out
        };
        let zlib = |text: &str| {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut encoder, text.as_bytes()).unwrap();
            encoder.finish().unwrap()
        };
        png.extend(chunk(
            b"zTXt",
            &[b"prompt\0\0".as_slice(), &zlib("{\"1\": {}}")].concat(),
        ));
        png.extend(chunk(
            b"iTXt",
            &[
                b"workflow\0\x01\0en\0\0".as_slice(),
                &zlib("{\"nodes\": [], \"title\": \"été\"}"),
            ]
            .concat(),
        ));
        png.extend(chunk(b"IEND", b""));
        let found = read_all(png).await.unwrap();
        assert_eq!(found.prompt.as_deref(), Some("{\"1\": {}}"));
        assert_eq!(
            found.workflow.as_deref(),
            Some("{\"nodes\": [], \"title\": \"été\"}")
        );
    }

    #[tokio::test]
    async fn broken_files_are_named_never_a_panic() {
        let png = fixture("comfyui_saved.png");
        let webp = fixture("comfyui_saved.webp");
        // Cut anywhere: an error or what was found before the cut, never a panic.
        for cut in (0..png.len()).step_by(13) {
            let mut head = png[..cut].to_vec();
            if Format::sniff(&head).is_none() {
                head = PNG_SIGNATURE.to_vec();
            }
            let _ = read(Format::Png, Bytes::new(), Body::from(head)).await;
        }
        for cut in (12..webp.len()).step_by(11) {
            let _ = read(Format::Webp, Bytes::new(), Body::from(webp[..cut].to_vec())).await;
        }
        for (name, format) in [
            ("comfyui_saved.flac", Format::Flac),
            ("comfyui_saved.mp4", Format::Mp4),
            ("comfyui_saved.webm", Format::Matroska),
            ("videohelpersuite_saved.mp4", Format::Mp4),
        ] {
            let file = fixture(name);
            for cut in 0..file.len() {
                let _ = read(format, Bytes::new(), Body::from(file[..cut].to_vec())).await;
            }
            // A flipped byte anywhere: the same.
            for at in 0..file.len() {
                let mut flipped = file.clone();
                flipped[at] ^= 0xFF;
                let _ = read(format, Bytes::new(), Body::from(flipped)).await;
            }
        }
        let cut_png = png[..png.len() - 30].to_vec();
        assert!(matches!(
            read_all(cut_png).await,
            Err(EmbeddedError::Damaged(_))
        ));
        let mut huge = PNG_SIGNATURE.to_vec();
        huge.extend_from_slice(&(u32::MAX).to_be_bytes());
        huge.extend_from_slice(b"tEXt");
        assert_eq!(read_all(huge).await, Err(EmbeddedError::TextTooLarge));
    }

    #[tokio::test]
    async fn a_video_whose_metadata_sits_after_its_frames_is_read_past_them() {
        // The moov after a large mdat (a 64-bit size), as SaveVideo writes it without faststart.
        let mp4 = fixture("comfyui_saved.mp4");
        let mdat_at = mp4.windows(4).position(|w| w == b"mdat").unwrap() - 4;
        let mdat_size = u32::from_be_bytes(mp4[mdat_at..mdat_at + 4].try_into().unwrap());
        let frames = 64 * 1024 * 1024u64;
        let mut large = mp4[..mdat_at].to_vec();
        large.extend_from_slice(&1u32.to_be_bytes());
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&(16 + frames).to_be_bytes());
        let pieces = futures_util::stream::iter(
            std::iter::once(Bytes::from(large))
                .chain((0..frames / 65536).map(|_| Bytes::from(vec![0u8; 65536])))
                .chain(std::iter::once(Bytes::copy_from_slice(
                    &mp4[mdat_at + mdat_size as usize..],
                )))
                .map(Ok::<_, std::io::Error>),
        );
        let found = read(Format::Mp4, Bytes::new(), Body::from_stream(pieces))
            .await
            .unwrap();
        assert_eq!(found, read_all(mp4).await.unwrap());
        assert!(is_json_object(&found.prompt));
    }

    #[tokio::test]
    async fn a_video_comment_that_is_not_the_workflow_is_no_workflow() {
        let mut found = Embedded::default();
        found.keep("comment", "made on a phone".to_owned());
        found.keep("comment", "{\"title\": \"x\"}".to_owned());
        assert_eq!(found, Embedded::default());
        found.keep("comment", "{\"prompt\": {\"1\": {}}}".to_owned());
        assert_eq!(found.prompt.as_deref(), Some("{\"1\":{}}"));
    }

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        assert_eq!(Format::sniff(PNG_SIGNATURE), Some(Format::Png));
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WEBPVP8X"), Some(Format::Webp));
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(Format::sniff(b"fLaC\0\0\0\x22"), Some(Format::Flac));
        assert_eq!(Format::sniff(b"\0\0\0\x20ftypisom"), Some(Format::Mp4));
        assert_eq!(
            Format::sniff(b"\x1a\x45\xdf\xa3\x9f"),
            Some(Format::Matroska)
        );
        assert_eq!(Format::sniff(b"{\"3\": {}}"), None);
    }
}
