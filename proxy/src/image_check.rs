//! Checks, on the stream, that an upload is built as the image format it claims, end to end.
//!
//! Sniffing the first bytes is not enough: a PNG with an HTML page appended starts as a PNG, is
//! stored by ComfyUI, and is served back by name. The relay walks each format's structure as
//! the bytes pass, holding nothing but a few header bytes:
//! - PNG: the signature, then chunks (length, type, data, CRC-32 checked), `IHDR` first with a
//!   non-zero size, `IEND` last, and nothing after it;
//! - GIF: header, screen descriptor and colour table, then extension and image blocks of
//!   sub-blocks, the trailer last, and nothing after it;
//! - WebP: a RIFF container whose declared size is exactly the file's;
//! - JPEG: markers and their segments, entropy-coded data after each scan, up to the end
//!   marker. Phones append data after it (a motion photo's video): that is dropped, not
//!   refused, so ComfyUI gets exactly the JPEG.
//!
//! It does not decode pixels: a file whose compressed data is broken inside a valid structure
//! still reaches ComfyUI, which fails to load it.

use crate::upload::ImageKind;

/// The largest PNG chunk the format allows.
const MAX_PNG_CHUNK: u32 = 0x7FFF_FFFF;

/// Where a format's walk is.
#[derive(Debug)]
enum Step {
    /// Collecting `need` bytes into `buffer`, then `then` reads them.
    Read { need: usize, then: Then },
    /// Passing over `left` bytes (a chunk's data, a sub-block, a segment).
    Skip { left: u64, then: Then },
    /// JPEG entropy-coded data, up to the next marker; `after_ff` when the last byte was 0xFF.
    Scan { after_ff: bool },
    /// The image ended; nothing more may follow (a JPEG's followers are dropped).
    Done,
}

/// What collected bytes are for.
#[derive(Debug, Clone, Copy)]
enum Then {
    PngSignature,
    PngChunkHead,
    PngCrc,
    GifHeader,
    GifBlock,
    GifExtensionLabel,
    GifImageDescriptor,
    GifCodeSize,
    GifSubBlock,
    WebpHeader,
    JpegStart,
    /// The 0xFF that starts a marker.
    JpegMarkerStart,
    /// The marker's code (more 0xFF are fill).
    JpegMarkerCode,
    /// A segment's length; a scan's segment is followed by entropy-coded data.
    JpegLength {
        scan: bool,
    },
    /// Entropy-coded data follows.
    JpegScan,
}

/// One upload's walk through its format.
#[derive(Debug)]
pub struct ImageCheck {
    kind: ImageKind,
    step: Step,
    buffer: Vec<u8>,
    /// PNG: the current chunk's type and CRC so far; whether any chunk was seen.
    png: Option<([u8; 4], crc32fast::Hasher)>,
    png_ihdr_seen: bool,
    /// WebP: the length the RIFF header declares, and what arrived.
    webp_length: Option<u64>,
    received: u64,
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

impl ImageCheck {
    /// A walk from the first byte of a file that sniffed as `kind`.
    pub fn new(kind: ImageKind) -> Self {
        let then = match kind {
            ImageKind::Png => (8, Then::PngSignature),
            ImageKind::Gif => (13, Then::GifHeader),
            ImageKind::Webp => (12, Then::WebpHeader),
            ImageKind::Jpeg => (2, Then::JpegStart),
        };
        Self {
            kind,
            step: Step::Read {
                need: then.0,
                then: then.1,
            },
            buffer: Vec::with_capacity(16),
            png: None,
            png_ihdr_seen: false,
            webp_length: None,
            received: 0,
        }
    }

    fn not(&self, why: &str) -> String {
        let format = match self.kind {
            ImageKind::Png => "PNG",
            ImageKind::Jpeg => "JPEG",
            ImageKind::Webp => "WebP",
            ImageKind::Gif => "GIF",
        };
        format!("This file starts as a {format} but is not one: {why}.")
    }

    /// Walks the next bytes of the file; returns how many of them belong to the image (fewer
    /// only after a JPEG's end), or why the file is not the image it claims to be.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, String> {
        let mut at = 0;
        while at < bytes.len() {
            match &mut self.step {
                Step::Done => {
                    if self.kind == ImageKind::Jpeg {
                        self.received += at as u64;
                        return Ok(at);
                    }
                    return Err(self.not("there is data after its end"));
                }
                Step::Read { need, then } => {
                    let take = (*need - self.buffer.len()).min(bytes.len() - at);
                    self.buffer.extend_from_slice(&bytes[at..at + take]);
                    at += take;
                    if self.buffer.len() == *need {
                        let then = *then;
                        let collected = std::mem::take(&mut self.buffer);
                        self.step = self.read(then, &collected)?;
                    }
                }
                Step::Skip { left, then } => {
                    let take = usize::try_from(*left)
                        .map_or(bytes.len() - at, |left| left.min(bytes.len() - at));
                    if let Some((_, crc)) = &mut self.png {
                        crc.update(&bytes[at..at + take]);
                    }
                    at += take;
                    *left -= take as u64;
                    if *left == 0 {
                        let then = *then;
                        self.step = self.after_skip(then);
                    }
                }
                Step::Scan { after_ff } if !*after_ff => {
                    // Entropy-coded data is most of a JPEG: jump to the next 0xFF.
                    match bytes[at..].iter().position(|&byte| byte == 0xFF) {
                        Some(offset) => {
                            at += offset + 1;
                            *after_ff = true;
                        }
                        None => at = bytes.len(),
                    }
                }
                Step::Scan { after_ff } => {
                    let byte = bytes[at];
                    at += 1;
                    match byte {
                        0x00 | 0xD0..=0xD7 => *after_ff = false,
                        0xFF => {}
                        marker => self.step = self.jpeg_marker(marker)?,
                    }
                }
            }
        }
        self.received += at as u64;
        if let Some(length) = self.webp_length {
            if self.received > length {
                return Err(self.not("there is data after its end"));
            }
            if self.received == length {
                self.step = Step::Done;
            }
        }
        Ok(at)
    }

    /// Whether the file ended where its format says it does.
    pub fn finish(&self) -> Result<(), String> {
        match self.step {
            Step::Done => Ok(()),
            _ => Err(self.not("it ends before the image does")),
        }
    }

    fn read(&mut self, then: Then, bytes: &[u8]) -> Result<Step, String> {
        let read = |need, then| Step::Read { need, then };
        let skip = |left: u64, then| {
            if left == 0 {
                read(1, then)
            } else {
                Step::Skip { left, then }
            }
        };
        Ok(match then {
            Then::PngSignature => {
                if bytes != b"\x89PNG\r\n\x1a\n" {
                    return Err(self.not("its signature is wrong"));
                }
                read(8, Then::PngChunkHead)
            }
            Then::PngChunkHead => {
                let length = be32(bytes);
                let kind: [u8; 4] = [bytes[4], bytes[5], bytes[6], bytes[7]];
                if length > MAX_PNG_CHUNK || !kind.iter().all(u8::is_ascii_alphabetic) {
                    return Err(self.not("a chunk is malformed"));
                }
                let ihdr = &kind == b"IHDR";
                if ihdr == self.png_ihdr_seen {
                    return Err(self.not("it does not begin with exactly one IHDR chunk"));
                }
                self.png_ihdr_seen = true;
                let mut crc = crc32fast::Hasher::new();
                crc.update(&kind);
                self.png = Some((kind, crc));
                if ihdr {
                    if length != 13 {
                        return Err(self.not("its IHDR chunk is malformed"));
                    }
                    // Read whole, to look at the size.
                    return Ok(Step::Read {
                        need: 13 + 4,
                        then: Then::PngCrc,
                    });
                }
                if length == 0 {
                    read(4, Then::PngCrc)
                } else {
                    Step::Skip {
                        left: u64::from(length),
                        then: Then::PngCrc,
                    }
                }
            }
            Then::PngCrc => {
                let (data, stored) = bytes.split_at(bytes.len() - 4);
                let (kind, mut crc) = self.png.take().expect("a chunk is open");
                crc.update(data);
                if crc.finalize() != be32(stored) {
                    return Err(self.not("a chunk's checksum is wrong"));
                }
                if &kind == b"IHDR" && (be32(&data[0..4]) == 0 || be32(&data[4..8]) == 0) {
                    return Err(self.not("it has no pixels"));
                }
                if &kind == b"IEND" {
                    Step::Done
                } else {
                    read(8, Then::PngChunkHead)
                }
            }
            Then::GifHeader => {
                let table = bytes[10] & 0x80 != 0;
                let size = 3u64 << ((bytes[10] & 0x07) + 1);
                skip(if table { size } else { 0 }, Then::GifBlock)
            }
            Then::GifBlock => match bytes[0] {
                0x21 => read(1, Then::GifExtensionLabel),
                0x2C => read(9, Then::GifImageDescriptor),
                0x3B => Step::Done,
                _ => return Err(self.not("a block is malformed")),
            },
            Then::GifExtensionLabel => read(1, Then::GifSubBlock),
            Then::GifImageDescriptor => {
                let table = bytes[8] & 0x80 != 0;
                let size = 3u64 << ((bytes[8] & 0x07) + 1);
                skip(if table { size } else { 0 }, Then::GifCodeSize)
            }
            Then::GifCodeSize => read(1, Then::GifSubBlock),
            Then::GifSubBlock => match bytes[0] {
                0 => read(1, Then::GifBlock),
                size => Step::Skip {
                    left: u64::from(size),
                    then: Then::GifSubBlock,
                },
            },
            Then::WebpHeader => {
                let declared = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                if &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WEBP" || declared < 4 {
                    return Err(self.not("its RIFF header is malformed"));
                }
                self.webp_length = Some(u64::from(declared) + 8);
                Step::Skip {
                    left: u64::MAX,
                    then: Then::WebpHeader,
                }
            }
            Then::JpegStart => {
                if bytes != [0xFF, 0xD8] {
                    return Err(self.not("it does not start with a start-of-image marker"));
                }
                read(1, Then::JpegMarkerStart)
            }
            Then::JpegMarkerStart => {
                if bytes[0] != 0xFF {
                    return Err(self.not("a segment does not start with a marker"));
                }
                read(1, Then::JpegMarkerCode)
            }
            Then::JpegMarkerCode => match bytes[0] {
                0xFF => read(1, Then::JpegMarkerCode),
                marker => self.jpeg_marker(marker)?,
            },
            Then::JpegLength { scan } => {
                let length = u16::from_be_bytes([bytes[0], bytes[1]]);
                if length < 2 {
                    return Err(self.not("a segment's length is malformed"));
                }
                let then = if scan {
                    Then::JpegScan
                } else {
                    Then::JpegMarkerStart
                };
                match u64::from(length - 2) {
                    0 => self.after_skip(then),
                    left => Step::Skip { left, then },
                }
            }
            Then::JpegScan => unreachable!("entropy-coded data is scanned, not read"),
        })
    }

    fn after_skip(&self, then: Then) -> Step {
        match then {
            Then::JpegScan => Step::Scan { after_ff: false },
            Then::PngCrc => Step::Read {
                need: 4,
                then: Then::PngCrc,
            },
            other => Step::Read {
                need: 1,
                then: other,
            },
        }
    }

    /// After a JPEG's 0xFF: what the marker byte `marker` starts.
    fn jpeg_marker(&self, marker: u8) -> Result<Step, String> {
        Ok(match marker {
            0xD9 => Step::Done,
            0xD0..=0xD7 | 0x01 => Step::Read {
                need: 1,
                then: Then::JpegMarkerStart,
            },
            0xDA => Step::Read {
                need: 2,
                then: Then::JpegLength { scan: true },
            },
            0xD8 | 0x00 => return Err(self.not("a marker is out of place")),
            _ => Step::Read {
                need: 2,
                then: Then::JpegLength { scan: false },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PNG: &[u8] = include_bytes!("../../tests/fixtures/phone.png");
    const GIF: &[u8] = &[
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xFF, 0xFF,
        0xFF, 0x00, 0x00, 0x00, 0x21, 0xF9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2C, 0x00, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
    ];

    fn jpeg() -> Vec<u8> {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpeg.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        jpeg.extend_from_slice(&[0xFF, 0xFF, 0xDB, 0x00, 0x03, 0x00]);
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 2, 3, 4, 5, 6]);
        jpeg.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56, 0xFF, 0xD0, 0x78]);
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        jpeg
    }

    fn webp() -> Vec<u8> {
        let mut webp = b"RIFF".to_vec();
        webp.extend_from_slice(&(4u32 + 8 + 6).to_le_bytes());
        webp.extend_from_slice(b"WEBPVP8L");
        webp.extend_from_slice(&6u32.to_le_bytes());
        webp.extend_from_slice(&[0x2F, 0, 0, 0, 0, 0]);
        webp
    }

    /// Feeds `bytes` in pieces of `piece`; the bytes kept, and the verdict.
    fn walk(kind: ImageKind, bytes: &[u8], piece: usize) -> Result<usize, String> {
        let mut check = ImageCheck::new(kind);
        let mut kept = 0;
        for chunk in bytes.chunks(piece.max(1)) {
            kept += check.feed(chunk)?;
        }
        check.finish()?;
        Ok(kept)
    }

    fn all() -> Vec<(ImageKind, Vec<u8>)> {
        vec![
            (ImageKind::Png, PNG.to_vec()),
            (ImageKind::Gif, GIF.to_vec()),
            (ImageKind::Jpeg, jpeg()),
            (ImageKind::Webp, webp()),
        ]
    }

    #[test]
    fn well_formed_images_of_the_four_formats_pass_whole() {
        for (kind, bytes) in all() {
            assert_eq!(walk(kind, &bytes, bytes.len()), Ok(bytes.len()), "{kind:?}");
        }
    }

    #[test]
    fn an_image_with_a_page_appended_is_refused_and_a_jpegs_followers_are_dropped() {
        for (kind, mut bytes) in all() {
            let length = bytes.len();
            bytes.extend_from_slice(b"<html><script>alert(1)</script></html>");
            let verdict = walk(kind, &bytes, 7);
            if kind == ImageKind::Jpeg {
                assert_eq!(verdict, Ok(length), "only the JPEG itself goes on");
            } else {
                assert!(verdict.unwrap_err().contains("after"), "{kind:?}");
            }
        }
    }

    #[test]
    fn a_cut_off_or_corrupted_image_is_refused() {
        for (kind, bytes) in all() {
            let cut = &bytes[..bytes.len() - 1];
            assert!(
                walk(kind, cut, 5).unwrap_err().contains("ends before"),
                "{kind:?}"
            );
        }
        let mut bad_crc = PNG.to_vec();
        bad_crc[29] ^= 0xFF;
        assert!(
            walk(ImageKind::Png, &bad_crc, 64)
                .unwrap_err()
                .contains("checksum")
        );
        let mut no_ihdr = PNG.to_vec();
        no_ihdr[12..16].copy_from_slice(b"tEXt");
        assert!(walk(ImageKind::Png, &no_ihdr, 64).is_err());
        let mut bad_block = GIF.to_vec();
        bad_block[19] = 0x99;
        assert!(
            walk(ImageKind::Gif, &bad_block, 64)
                .unwrap_err()
                .contains("block")
        );
    }

    proptest! {
        #[test]
        fn the_verdict_does_not_depend_on_how_the_stream_is_cut(
            piece in 1usize..64,
            which in 0usize..4,
            tail in prop::collection::vec(any::<u8>(), 0..16),
        ) {
            let (kind, mut bytes) = all().swap_remove(which);
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(walk(kind, &bytes, piece), walk(kind, &bytes, bytes.len()));
        }
    }
}
