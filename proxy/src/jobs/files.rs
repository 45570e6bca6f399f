//! Which of ComfyUI's files each device may fetch with `/view`.
//!
//! ComfyUI serves any file of its input, output and temp folders to whoever names it. Through
//! the relay a device gets the files it uploaded and the files its own prompts made: the relay
//! notes them as they pass (upload answers, `executed` messages on the device's raw socket, the
//! device's own `/history` entries); the outputs of the relay's jobs are in the job registry.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use shared::comfy::{ImageRef, NodeOutput};

use crate::device::DeviceId;

/// Files remembered per device (the oldest are forgotten first).
const MAX_FILES_PER_DEVICE: usize = 20_000;

#[derive(Default)]
struct Granted {
    files: HashSet<ImageRef>,
    order: VecDeque<ImageRef>,
}

/// The files each device was given or made.
#[derive(Default)]
pub struct Files(Mutex<HashMap<DeviceId, Granted>>);

impl Files {
    fn lock(&self) -> MutexGuard<'_, HashMap<DeviceId, Granted>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets `device` fetch `file`.
    pub fn grant(&self, device: &DeviceId, file: ImageRef) {
        let mut devices = self.lock();
        let granted = devices.entry(device.clone()).or_default();
        if granted.files.insert(file.clone()) {
            granted.order.push_back(file);
        }
        while granted.order.len() > MAX_FILES_PER_DEVICE {
            if let Some(oldest) = granted.order.pop_front() {
                granted.files.remove(&oldest);
            }
        }
    }

    /// Lets `device` fetch every file of `output`.
    pub fn grant_output(&self, device: &DeviceId, output: &NodeOutput) {
        for output in output.outputs() {
            if let Some(file) = output.file() {
                self.grant(device, file.clone());
            }
        }
    }

    /// Whether `device` was given `file`.
    pub fn granted(&self, device: &DeviceId, file: &ImageRef) -> bool {
        self.lock()
            .get(device)
            .is_some_and(|granted| granted.files.contains(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, kind: &str) -> ImageRef {
        ImageRef {
            filename: name.to_owned(),
            subfolder: String::new(),
            kind: kind.to_owned(),
        }
    }

    #[test]
    fn a_device_sees_its_outputs_of_every_kind_and_nothing_of_another() {
        let output: NodeOutput = serde_json::from_value(serde_json::json!({
            "images": [{"filename": "a.png", "subfolder": "", "type": "output"}],
            "gifs": [{"filename": "b.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4"}],
            "text": ["not a file"],
        }))
        .unwrap();
        let files = Files::default();
        let phone = DeviceId::parse("0123456789abcdef").unwrap();
        files.grant_output(&phone, &output);
        assert!(files.granted(&phone, &file("a.png", "output")));
        assert!(files.granted(&phone, &file("b.mp4", "output")));
        assert!(!files.granted(&phone, &file("a.png", "temp")));
        assert!(!files.granted(&DeviceId::scripts(), &file("a.png", "output")));
    }
}
