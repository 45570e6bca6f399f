//! Sending a picture into ComfyUI's input folder: checked against ComfyUI's size limit before
//! anything is sent, converted from HEIC when the browser can decode it, and uploaded with
//! progress (which `fetch` cannot report, hence `XMLHttpRequest`).

use futures_channel::oneshot;
use leptos::prelude::{document, window};
use shared::comfy::UploadedImage;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, File};

use crate::api::{ApiError, error_from_text};

/// Whether a file is a HEIC/HEIF photo (what iPhones take by default).
pub fn is_heic(mime: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(mime, "image/heic" | "image/heif")
        || name.ends_with(".heic")
        || name.ends_with(".heif")
}

/// The file name to upload under, with `.jpg` when the picture was converted.
pub fn upload_name(name: &str, converted: bool) -> String {
    if !converted {
        return name.to_owned();
    }
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    format!("{stem}.jpg")
}

/// Says what is wrong with a picture's size, if anything.
pub fn size_problem(bytes: f64, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    // Tenths of a megabyte, in integers: float formatting would weigh on the bundle.
    let tenths = (bytes / 104_857.6).round() as u64;
    (bytes > limit as f64).then(|| {
        format!(
            "This picture is {}.{} MB; ComfyUI accepts at most {} MB.",
            tenths / 10,
            tenths % 10,
            limit / 1_048_576
        )
    })
}

fn js_error(_: wasm_bindgen::JsValue) -> String {
    "This browser cannot decode HEIC photos. Set the camera to Most Compatible (JPEG) in \
     Settings → Camera → Formats, or send a JPEG."
        .to_owned()
}

/// Re-encodes a picture the browser can decode (HEIC on Safari) as JPEG.
async fn to_jpeg(blob: &Blob) -> Result<Blob, String> {
    let bitmap: web_sys::ImageBitmap = JsFuture::from(
        window()
            .create_image_bitmap_with_blob(blob)
            .map_err(js_error)?,
    )
    .await
    .map_err(js_error)?
    .unchecked_into();
    let canvas: web_sys::HtmlCanvasElement = document()
        .create_element("canvas")
        .map_err(js_error)?
        .unchecked_into();
    canvas.set_width(bitmap.width());
    canvas.set_height(bitmap.height());
    let context: web_sys::CanvasRenderingContext2d = canvas
        .get_context("2d")
        .map_err(js_error)?
        .ok_or_else(|| js_error(wasm_bindgen::JsValue::NULL))?
        .unchecked_into();
    context
        .draw_image_with_image_bitmap(&bitmap, 0.0, 0.0)
        .map_err(js_error)?;
    let (tx, rx) = oneshot::channel::<Option<Blob>>();
    let done = Closure::once(move |blob: Option<Blob>| {
        let _ = tx.send(blob);
    });
    canvas
        .to_blob_with_type_and_encoder_options(
            done.as_ref().unchecked_ref(),
            "image/jpeg",
            &0.92.into(),
        )
        .map_err(js_error)?;
    rx.await
        .ok()
        .flatten()
        .ok_or_else(|| js_error(wasm_bindgen::JsValue::NULL))
}

/// A chosen picture made ready to send: HEIC converted to JPEG (or a clear message), and the
/// size checked against ComfyUI's limit.
pub async fn prepare(file: File, limit: Option<u64>) -> Result<(Blob, String), String> {
    let name = file.name();
    let heic = is_heic(&file.type_(), &name);
    let blob: Blob = if heic {
        to_jpeg(&file).await?
    } else {
        file.into()
    };
    if let Some(problem) = size_problem(blob.size(), limit) {
        return Err(problem);
    }
    Ok((blob, upload_name(&name, heic)))
}

/// Uploads a picture to `/upload/image`, reporting progress from 0 to 1.
pub async fn upload(
    blob: &Blob,
    name: &str,
    progress: impl Fn(f64) + 'static,
) -> Result<UploadedImage, ApiError> {
    let failed = |_| ApiError::Network("the browser refused to send the picture".to_owned());
    let form = web_sys::FormData::new().map_err(failed)?;
    form.append_with_blob_and_filename("image", blob, name)
        .map_err(failed)?;
    let xhr = web_sys::XmlHttpRequest::new().map_err(failed)?;
    xhr.open("POST", "/upload/image").map_err(failed)?;
    let on_progress =
        Closure::<dyn Fn(web_sys::ProgressEvent)>::new(move |event: web_sys::ProgressEvent| {
            if event.length_computable() && event.total() > 0.0 {
                progress(event.loaded() / event.total());
            }
        });
    xhr.upload()
        .map_err(failed)?
        .set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
    let (tx, rx) = oneshot::channel::<()>();
    let on_end = Closure::once(move || {
        let _ = tx.send(());
    });
    xhr.set_onloadend(Some(on_end.as_ref().unchecked_ref()));
    xhr.send_with_opt_form_data(Some(&form)).map_err(failed)?;
    let _ = rx.await;
    let status = xhr.status().unwrap_or(0);
    let text = xhr.response_text().ok().flatten().unwrap_or_default();
    match status {
        0 => Err(ApiError::Network("the upload was cut off".to_owned())),
        200..=299 => serde_json::from_str(&text).map_err(|_| error_from_text(status, text)),
        _ => Err(error_from_text(status, text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heic_is_recognised_by_type_or_name() {
        assert!(is_heic("image/heic", "IMG_0001"));
        assert!(is_heic("", "IMG_0001.HEIC"));
        assert!(!is_heic("image/jpeg", "IMG_0001.jpg"));
    }

    #[test]
    fn a_converted_photo_gets_a_jpg_name() {
        assert_eq!(upload_name("IMG_0001.HEIC", true), "IMG_0001.jpg");
        assert_eq!(upload_name("cat.png", false), "cat.png");
    }

    #[test]
    fn the_size_is_checked_against_comfyuis_limit_before_sending() {
        assert_eq!(size_problem(5.0, Some(10)), None);
        assert_eq!(
            size_problem(150.0 * 1_048_576.0, Some(104_857_600)),
            Some("This picture is 150.0 MB; ComfyUI accepts at most 100 MB.".to_owned())
        );
        assert_eq!(size_problem(1e12, None), None);
    }
}
