//! ComfyUI's binary WebSocket frames: live previews of the running node.
//!
//! Every binary frame starts with a 4-byte big-endian event type. Type 4 (sent once the client
//! negotiated `supports_preview_metadata`) continues with a 4-byte length N, N bytes of JSON
//! metadata naming the prompt and node, then the image. Type 1 (legacy) continues with a 4-byte
//! image format (1 = JPEG), then the image, and says nothing about which prompt it belongs to.

use serde::{Deserialize, Serialize};

/// Legacy preview: format code, then the image.
pub const PREVIEW_IMAGE: u32 = 1;
/// Preview with JSON metadata, then the image.
pub const PREVIEW_IMAGE_WITH_METADATA: u32 = 4;

/// A binary frame, split into its parts without copying the image.
#[derive(Debug, Clone, PartialEq)]
pub enum BinaryFrame<'a> {
    /// A preview image.
    Preview(PreviewImage<'a>),
    /// An event type this code does not know; ignored by callers.
    Unknown {
        /// The frame's event type.
        event_type: u32,
    },
}

/// A preview image and what is known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewImage<'a> {
    /// Which prompt and node it belongs to; only type-4 frames say.
    pub metadata: Option<PreviewMetadata>,
    /// The image's MIME type when the frame names it.
    pub mime: Option<String>,
    /// The encoded image.
    pub image: &'a [u8],
}

/// The JSON header of a type-4 preview frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewMetadata {
    /// The node producing the preview.
    pub node_id: String,
    /// The prompt.
    pub prompt_id: String,
    /// The node as shown in the UI.
    #[serde(default)]
    pub display_node_id: Option<String>,
    /// The subgraph node containing it, if any.
    #[serde(default)]
    pub parent_node_id: Option<String>,
    /// The node in the expanded graph.
    #[serde(default)]
    pub real_node_id: Option<String>,
    /// For example `image/jpeg`.
    #[serde(default)]
    pub image_type: Option<String>,
}

/// Why a binary frame could not be split.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PreviewError {
    /// Fewer bytes than the header announces.
    #[error("binary frame of {len} bytes is shorter than its header")]
    Truncated {
        /// The frame's length.
        len: usize,
    },
    /// The type-4 metadata is not the recorded JSON object.
    #[error("preview metadata is not valid JSON: {0}")]
    Metadata(String),
}

fn be_u32(bytes: &[u8], at: usize) -> Result<u32, PreviewError> {
    let word = bytes
        .get(at..at + 4)
        .ok_or(PreviewError::Truncated { len: bytes.len() })?;
    Ok(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

/// Lays out a type-4 preview frame: type, metadata length, metadata JSON, image.
pub fn with_metadata(metadata: &PreviewMetadata, image: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(metadata).expect("metadata serialises");
    let len = u32::try_from(json.len()).expect("metadata is small");
    let mut frame = Vec::with_capacity(8 + json.len() + image.len());
    frame.extend_from_slice(&PREVIEW_IMAGE_WITH_METADATA.to_be_bytes());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&json);
    frame.extend_from_slice(image);
    frame
}

impl<'a> BinaryFrame<'a> {
    /// Splits a binary frame as ComfyUI lays it out.
    pub fn parse(frame: &'a [u8]) -> Result<Self, PreviewError> {
        match be_u32(frame, 0)? {
            PREVIEW_IMAGE => {
                let format = be_u32(frame, 4)?;
                Ok(Self::Preview(PreviewImage {
                    metadata: None,
                    mime: (format == 1).then(|| "image/jpeg".to_owned()),
                    image: &frame[8..],
                }))
            }
            PREVIEW_IMAGE_WITH_METADATA => {
                let len = be_u32(frame, 4)? as usize;
                let json = frame
                    .get(8..8 + len)
                    .ok_or(PreviewError::Truncated { len: frame.len() })?;
                let metadata: PreviewMetadata = serde_json::from_slice(json)
                    .map_err(|e| PreviewError::Metadata(e.to_string()))?;
                Ok(Self::Preview(PreviewImage {
                    mime: metadata.image_type.clone(),
                    metadata: Some(metadata),
                    image: &frame[8 + len..],
                }))
            }
            event_type => Ok(Self::Unknown { event_type }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::fixtures;

    #[test]
    fn every_recorded_binary_frame_splits_as_the_recorder_decoded_it() {
        let frames = fixtures::ws_binary_frames();
        assert!(frames.len() > 20, "expected many recorded previews");
        let mut kinds = std::collections::BTreeSet::new();
        for (name, bytes, record) in frames {
            let BinaryFrame::Preview(preview) = BinaryFrame::parse(&bytes).unwrap() else {
                panic!("{name}: not a preview")
            };
            assert_eq!(
                preview.image.len() as u64,
                record["image_bytes"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(&preview.image[..2], &[0xFF, 0xD8], "{name}: a JPEG");
            assert_eq!(preview.mime.as_deref(), Some("image/jpeg"));
            let event_type = record["event_type"].as_u64().unwrap();
            kinds.insert(event_type);
            match event_type {
                4 => {
                    let expected: PreviewMetadata =
                        serde_json::from_value(record["metadata"].clone()).unwrap();
                    assert_eq!(preview.metadata, Some(expected), "{name}");
                }
                1 => assert_eq!(preview.metadata, None, "{name}"),
                other => panic!("{name}: unexpected recorded type {other}"),
            }
        }
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), vec![1, 4]);
    }

    #[test]
    fn a_frame_laid_out_with_metadata_splits_back_into_the_same_parts() {
        let metadata = PreviewMetadata {
            node_id: "3".into(),
            prompt_id: "p".into(),
            display_node_id: Some("3".into()),
            parent_node_id: None,
            real_node_id: Some("3".into()),
            image_type: Some("image/jpeg".into()),
        };
        let frame = with_metadata(&metadata, &[0xFF, 0xD8, 1, 2]);
        let BinaryFrame::Preview(preview) = BinaryFrame::parse(&frame).unwrap() else {
            panic!("not a preview")
        };
        assert_eq!(preview.metadata, Some(metadata));
        assert_eq!(preview.image, [0xFF, 0xD8, 1, 2]);
    }

    #[test]
    fn an_unknown_event_type_is_reported_not_rejected() {
        assert_eq!(
            BinaryFrame::parse(&[0, 0, 0, 3, b'h', b'i']),
            Ok(BinaryFrame::Unknown { event_type: 3 })
        );
    }

    #[test]
    fn a_truncated_frame_is_an_error() {
        assert_eq!(
            BinaryFrame::parse(&[0, 0, 0, 4, 0, 0, 0, 50, b'{']),
            Err(PreviewError::Truncated { len: 9 })
        );
        assert_eq!(
            BinaryFrame::parse(&[0, 0]),
            Err(PreviewError::Truncated { len: 2 })
        );
    }
}
