//! Image uploads, checked on the way through and streamed, never held whole.
//!
//! ComfyUI stores whatever it is sent as an "image" (a text file included), keeps `../` in file
//! names, and lets a client pick folder, type and overwriting (recorded in
//! `http/upload_not_an_image.json` and `upload_path_traversal.json`). The relay:
//! - refuses a declared body over the limit before contacting ComfyUI, and cuts an undeclared
//!   one at the limit (ComfyUI then sees an aborted request, never a stored file): 413;
//! - sniffs the first bytes: PNG, JPEG, WebP and GIF pass; anything else is 415, with a hint for
//!   the HEIC and AVIF photos phones take; then walks the format's structure to its end as the
//!   bytes pass ([`crate::image_check`]): a file that is not the image it starts as (a PNG with
//!   a page appended, a cut-off one) is 415 and never stored;
//! - reduces the file name to a safe base name with the right extension, allows only simple
//!   subfolder names and the `input` type, and never overwrites (ComfyUI renames instead).
//!
//! The image goes to ComfyUI as a new multipart body written while the browser's is read.
//!
//! A mask (`/upload/mask`) is such an image with an `original_ref`: the picture it is painted
//! over, which ComfyUI opens from any of its folders and saves again, with the mask as its
//! alpha channel, into the input folder the device may then view. So the original must be a
//! file the device may open itself ([`crate::raw::may_open`]), judged on the folder ComfyUI will
//! really open: otherwise a mask would copy another device's picture into the device's hands.

use std::io;

use axum::Json;
use axum::extract::multipart::{Field, Multipart, MultipartError};
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt as _;
use shared::comfy::{ImageRef, MaskOriginal, UploadedImage};

use crate::backend::Backend;
use crate::device::DeviceId;
use crate::error::{ApiError, RelayError, error_chain};
use crate::image_check::ImageCheck;
use crate::state::AppState;

/// Room for the multipart framing and small fields around an image at the limit.
pub const FORM_OVERHEAD: u64 = 64 * 1024;
/// The longest file name kept (without extension).
const MAX_NAME: usize = 100;
/// Chunks in flight between the browser's body and ComfyUI's: the memory an upload costs.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Where an upload goes in ComfyUI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadRoute {
    /// `/upload/image`: a picture.
    Image,
    /// `/upload/mask`: a mask over a picture ComfyUI has (`original_ref`).
    Mask,
}

impl UploadRoute {
    /// ComfyUI's path for it, which the relay answers too.
    pub fn path(self) -> &'static str {
        match self {
            Self::Image => "/upload/image",
            Self::Mask => "/upload/mask",
        }
    }
}

/// An image format ComfyUI reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    Webp,
    /// GIF.
    Gif,
}

impl ImageKind {
    /// The file extension to use.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
            Self::Gif => "gif",
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
        }
    }

    fn accepts_extension(self, extension: &str) -> bool {
        match self {
            Self::Jpeg => matches!(extension, "jpg" | "jpeg"),
            other => extension == other.extension(),
        }
    }
}

/// Why an upload is refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Over the size limit.
    #[error("The image is larger than the {} MB limit.", .0 / (1024 * 1024))]
    TooLarge(u64),
    /// Not an image ComfyUI reads.
    #[error("{0}")]
    NotAnImage(String),
    /// The form is not what `/upload/image` takes.
    #[error("{0}")]
    BadForm(String),
    /// The form names a node the picture cannot go into.
    #[error("{0}")]
    WrongNode(String),
    /// The mask is over a picture the device may not open.
    #[error("{0}")]
    NotYours(String),
    /// ComfyUI answered something else than the upload.
    #[error("ComfyUI refused the upload (status {status}): {text}")]
    ComfyUi {
        /// Its status.
        status: u16,
        /// Its body.
        text: String,
    },
    /// ComfyUI is down or slow.
    #[error(transparent)]
    Upstream(#[from] RelayError),
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        if let Self::Upstream(error) = self {
            return error.into_response();
        }
        let status = match &self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotAnImage(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadForm(_) => StatusCode::BAD_REQUEST,
            Self::WrongNode(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotYours(_) => StatusCode::FORBIDDEN,
            Self::ComfyUi { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Self::Upstream(_) => unreachable!("answered above"),
        };
        ApiError::new(status, self.to_string()).into_response()
    }
}

/// What the first bytes of a file say it is.
pub fn sniff(head: &[u8]) -> Result<ImageKind, String> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageKind::Png);
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageKind::Jpeg);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Ok(ImageKind::Gif);
    }
    if head.len() >= 12 && starts(b"RIFF") && &head[8..12] == b"WEBP" {
        return Ok(ImageKind::Webp);
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        let brand = &head[8..12];
        if [b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"]
            .iter()
            .any(|b| brand == *b)
        {
            return Err(
                "This is a HEIC photo, which ComfyUI cannot read. Send it as JPEG: on an \
                        iPhone, Settings → Camera → Formats → Most Compatible, or share it \
                        as JPEG."
                    .to_owned(),
            );
        }
        if brand == b"avif" || brand == b"avis" {
            return Err(
                "This is an AVIF image, which ComfyUI cannot read. Send a PNG, JPEG, \
                        WebP or GIF."
                    .to_owned(),
            );
        }
    }
    Err("This file is not an image ComfyUI can read: send a PNG, JPEG, WebP or GIF.".to_owned())
}

/// A file name reduced to a safe base name with the extension of what it really is.
pub fn safe_filename(name: &str, kind: ImageKind) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\'' | ':' | '*' | '?' | '<' | '>' | '|'))
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    let (stem, extension) = match cleaned.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem, extension.to_ascii_lowercase()),
        _ => (cleaned, String::new()),
    };
    let stem: String = stem.chars().take(MAX_NAME).collect();
    let stem = if stem.trim().is_empty() {
        "upload".to_owned()
    } else {
        stem
    };
    if kind.accepts_extension(&extension) {
        format!("{stem}.{extension}")
    } else {
        format!("{stem}.{}", kind.extension())
    }
}

/// Checks a subfolder: empty, or up to two simple segments of letters, digits, `-` and `_`.
pub fn safe_subfolder(subfolder: &str) -> Result<String, UploadError> {
    let subfolder = subfolder.trim().trim_matches('/');
    let segments: Vec<&str> = subfolder.split('/').filter(|s| !s.is_empty()).collect();
    let simple = |segment: &&str| {
        segment.len() <= 64
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if segments.len() > 2 || !segments.iter().all(simple) {
        return Err(UploadError::BadForm(
            "The subfolder may only hold up to two names of letters, digits, - and _.".to_owned(),
        ));
    }
    Ok(segments.join("/"))
}

fn bad_form(error: MultipartError) -> UploadError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return UploadError::BadForm("The form is too large.".to_owned());
    }
    UploadError::BadForm(format!(
        "The upload is not a valid form: {}",
        error.body_text()
    ))
}

/// The small text fields that go with the image.
#[derive(Debug, Default)]
pub struct FormFields {
    subfolder: String,
    /// The node to put the picture into (the automation API's `node` field).
    pub node: Option<String>,
    /// A mask's picture.
    original: Option<MaskOriginal>,
}

/// The longest `original_ref` read: a file name, a subfolder and a type, as JSON.
const MAX_ORIGINAL_REF: usize = 1024;

/// The longest text field read (a subfolder, a node id or title).
const MAX_TEXT_FIELD: usize = 256;
/// The most of any other field read, and thrown away.
const MAX_OTHER_FIELD: usize = 64 * 1024;

/// Reads a field of at most `cap` bytes, chunk by chunk: a longer one is refused as soon as it
/// passes the cap, never held whole.
async fn capped(mut field: Field<'_>, cap: usize) -> Result<Vec<u8>, UploadError> {
    let name = field
        .name()
        .unwrap_or_default()
        .chars()
        .take(40)
        .collect::<String>();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
        if bytes.len() + chunk.len() > cap {
            return Err(UploadError::BadForm(format!(
                "The form field \"{name}\" is longer than {cap} bytes."
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn small_text(field: Field<'_>) -> Result<String, UploadError> {
    let bytes = capped(field, MAX_TEXT_FIELD).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

async fn option(
    route: UploadRoute,
    options: &mut FormFields,
    field: Field<'_>,
) -> Result<(), UploadError> {
    match field.name().unwrap_or_default() {
        "original_ref" if route == UploadRoute::Mask => {
            let text = capped(field, MAX_ORIGINAL_REF).await?;
            let original = serde_json::from_slice(&text).map_err(|error| {
                UploadError::BadForm(format!(
                    "\"original_ref\" must name the picture under the mask, as \
                     {{\"filename\": ..., \"subfolder\": ..., \"type\": ...}}: {error}"
                ))
            })?;
            options.original = Some(original);
        }
        "subfolder" => options.subfolder = safe_subfolder(&small_text(field).await?)?,
        "node" => options.node = Some(small_text(field).await?.trim().to_owned()),
        "type" => {
            let kind = small_text(field).await?;
            if !matches!(kind.trim(), "" | "input") {
                return Err(UploadError::BadForm(format!(
                    "Uploads go to ComfyUI's input folder; type \"{kind}\" is not allowed."
                )));
            }
        }
        // Never overwrite: ComfyUI gives a new name to a different file of the same name.
        "overwrite" => drop(small_text(field).await?),
        _ => drop(capped(field, MAX_OTHER_FIELD).await?),
    }
    Ok(())
}

async fn trailing_options(
    route: UploadRoute,
    multipart: &mut Multipart,
    options: &mut FormFields,
) -> Result<(), UploadError> {
    while let Some(field) = multipart.next_field().await.map_err(bad_form)? {
        option(route, options, field).await?;
    }
    Ok(())
}

/// Checks a mask's picture, once the form has named it (`required` once the form has ended).
fn check_original(
    state: &AppState,
    device: &DeviceId,
    options: &FormFields,
    required: bool,
) -> Result<(), UploadError> {
    match &options.original {
        Some(original) if !crate::raw::may_open(state, device, original.file()) => {
            Err(UploadError::NotYours(format!(
                "A mask may only go over a picture this device may view; \"{}\" is not one.",
                original.filename.chars().take(120).collect::<String>()
            )))
        }
        None if required => Err(UploadError::BadForm(
            "A mask needs \"original_ref\": the picture it is painted over.".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// The multipart framing written to ComfyUI.
struct Form {
    boundary: String,
}

impl Form {
    /// A form with a boundary of its own.
    fn new() -> Self {
        Self {
            boundary: format!("comfy-relay-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Its `Content-Type`, naming the boundary.
    fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    fn file_head(&self, filename: &str, kind: ImageKind) -> Bytes {
        Bytes::from(format!(
            "--{}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n\
             Content-Type: {}\r\n\r\n",
            self.boundary,
            kind.mime()
        ))
    }

    fn tail(&self, options: &FormFields) -> Bytes {
        let mut tail = String::from("\r\n");
        // As stated: ComfyUI reads a folder mark in it as the relay judged it.
        let original = options
            .original
            .as_ref()
            .map(|original| serde_json::to_string(original).expect("a mask's original serialises"));
        let fields = [("type", "input"), ("subfolder", options.subfolder.as_str())]
            .into_iter()
            .chain(
                original
                    .as_deref()
                    .map(|original| ("original_ref", original)),
            );
        for (name, value) in fields {
            tail.push_str(&format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            ));
        }
        tail.push_str(&format!("--{}--\r\n", self.boundary));
        Bytes::from(tail)
    }
}

/// Reads the browser's form and streams its image to ComfyUI's `route`, with the form's other
/// fields. `before_image` sees the fields that came before the image and may refuse the upload
/// before any of it reaches ComfyUI.
pub async fn stream_image(
    state: &AppState,
    device: &DeviceId,
    route: UploadRoute,
    mut multipart: Multipart,
    before_image: impl FnOnce(&FormFields) -> Result<(), UploadError>,
) -> Result<(UploadedImage, FormFields), UploadError> {
    let limit = state.max_upload_bytes;
    let mut options = FormFields::default();
    // Fields before the image.
    let mut image = loop {
        let field = multipart
            .next_field()
            .await
            .map_err(bad_form)?
            .ok_or_else(|| UploadError::BadForm("The form has no \"image\" file.".to_owned()))?;
        if field.name() == Some("image") && field.file_name().is_some() {
            break field;
        }
        option(route, &mut options, field).await?;
    };
    before_image(&options)?;
    check_original(state, device, &options, false)?;
    let mut head = Vec::new();
    while head.len() < 16 {
        match image.chunk().await.map_err(bad_form)? {
            Some(chunk) => head.extend_from_slice(&chunk),
            None => break,
        }
    }
    let kind = sniff(&head).map_err(UploadError::NotAnImage)?;
    if head.len() as u64 > limit {
        return Err(UploadError::TooLarge(limit));
    }
    // A mask goes to the first server, which opens the picture under it.
    let landing = match route {
        UploadRoute::Image => state.jobs.landing(),
        UploadRoute::Mask => &state.jobs.backends()[0],
    };
    let filename = landing_name(
        safe_filename(image.file_name().unwrap_or_default(), kind),
        landing.index == 0,
    );

    let form = Form::new();
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let url = landing.upstream.url_for(route.path());
    let content_type = form.content_type();
    let send = landing.comfy.upload(
        route.path(),
        &content_type,
        reqwest::Body::wrap_stream(receiver_stream(rx)),
    );
    tokio::pin!(send);
    // The image, passed on chunk by chunk while ComfyUI reads it.
    let image_fed = async {
        let mut image = image;
        let mut sent = head.len() as u64;
        // Each chunk is checked before it goes on: a refusal mid-way aborts ComfyUI's side.
        let mut check = ImageCheck::new(kind);
        let kept = check.feed(&head).map_err(UploadError::NotAnImage)?;
        let _ = tx.send(Ok(form.file_head(&filename, kind))).await;
        let _ = tx.send(Ok(Bytes::from(head).slice(..kept))).await;
        while let Some(chunk) = image.chunk().await.map_err(bad_form)? {
            sent += chunk.len() as u64;
            if sent > limit {
                return Err(UploadError::TooLarge(limit));
            }
            let kept = check.feed(&chunk).map_err(UploadError::NotAnImage)?;
            // Awaiting each send keeps at most a few chunks in memory.
            if kept > 0 && tx.send(Ok(chunk.slice(..kept))).await.is_err() {
                break;
            }
        }
        check.finish().map_err(UploadError::NotAnImage)
    };
    let mut answered = None;
    let mut refused = None;
    tokio::select! {
        fed = image_fed => refused = fed.err(),
        // ComfyUI answered before the end of the image: it refused it.
        early = &mut send => answered = Some(early),
    }
    if refused.is_none() && answered.is_none() {
        // Fields after the image, then the end of the form.
        let complete = trailing_options(route, &mut multipart, &mut options)
            .await
            .and_then(|()| check_original(state, device, &options, route == UploadRoute::Mask));
        match complete {
            Ok(()) => {
                let _ = tx.send(Ok(form.tail(&options))).await;
            }
            Err(error) => refused = Some(error),
        }
    }
    if let Some(refused) = refused {
        // Abort ComfyUI's side: its request fails instead of storing a partial file.
        let _ = tx.send(Err(io::Error::other("upload refused"))).await;
        return Err(refused);
    }
    drop(tx);
    let sent = match answered {
        Some(answer) => answer,
        None => send.await,
    };
    let uploaded = stored(sent?, &url).await?;
    // The device may see what it uploaded, and only that of the input folder.
    state.jobs.files.grant(device, uploaded.file());
    copy_to_other_servers(state, landing, &uploaded.file());
    Ok((uploaded, options))
}

/// The name to upload a picture named `name` under: itself on the first server. Another server
/// takes uploads only while the first does not answer, and the first may hold another picture
/// of that name, which the relay would then know by the same name as this one; so there the
/// name gets a random mark (`phone-3f9a07c2.png`).
fn landing_name(name: String, on_first: bool) -> String {
    if on_first {
        return name;
    }
    let mark = &uuid::Uuid::new_v4().simple().to_string()[..8];
    match name.rsplit_once('.') {
        Some((stem, extension)) => format!("{stem}-{mark}.{extension}"),
        None => format!("{name}-{mark}"),
    }
}

/// Copies a picture uploaded to `landing` to every other server that answers, so that a job
/// using it can run on any of them. The copies go on in the background: the upload is
/// answered once `landing` has the picture, however slow the others are. A server that does
/// not take it (down, failing, or not done yet) is given it when a job that uses it is handed
/// to it ([`copy_input`]).
fn copy_to_other_servers(state: &AppState, landing: &std::sync::Arc<Backend>, file: &ImageRef) {
    landing.holds_input(file.clone(), file.clone());
    let others = state
        .jobs
        .backends()
        .iter()
        .filter(|backend| backend.index != landing.index && backend.is_reachable());
    for backend in others {
        let (landing, backend, file) = (landing.clone(), backend.clone(), file.clone());
        state.tasks.spawn(async move {
            if let Err(error) = copy_input(&landing, &backend, &file).await {
                tracing::warn!(
                    file = %file.filename,
                    to = backend.key(),
                    %error,
                    "an upload was not copied to another ComfyUI server yet"
                );
            }
        });
    }
}

/// Streams uploaded input picture `file` from `from`'s input folder (under the name `from`
/// holds it by) into `to`'s, unless `to` holds it
/// by the time no other copy to it is under way, and returns the name `to` holds it under.
/// Nothing is overwritten: people may upload to a server directly, and a server that holds
/// another picture of that name keeps it and names the copy anew (`phone (1).png`), as
/// ComfyUI does with any upload; the same picture keeps its name.
pub async fn copy_input(
    from: &Backend,
    to: &Backend,
    file: &ImageRef,
) -> Result<ImageRef, UploadError> {
    let _copying = to.copying.lock().await;
    if let Some(named) = to.input_named(file) {
        return Ok(named);
    }
    // Found down while this copy waited its turn: the copies queued behind a hung server do
    // not each wait for it; the first job handed to it once it is back brings the picture.
    if !to.is_reachable() {
        return Err(UploadError::Upstream(RelayError::Stalled {
            url: to.upstream.base().to_string(),
        }));
    }
    let source = from
        .comfy
        .download(&from.input_named(file).unwrap_or_else(|| file.clone()))
        .await?;
    let form = Form::new();
    let fields = FormFields {
        subfolder: file.subfolder.clone(),
        ..FormFields::default()
    };
    // ComfyUI goes by the bytes, not the part's type; a mask is saved as a PNG.
    let kind = [ImageKind::Jpeg, ImageKind::Webp, ImageKind::Gif]
        .into_iter()
        .find(|kind| {
            file.filename
                .rsplit_once('.')
                .is_some_and(|(_, extension)| {
                    kind.accepts_extension(&extension.to_ascii_lowercase())
                })
        })
        .unwrap_or(ImageKind::Png);
    let head = form.file_head(&file.filename, kind);
    let tail = form.tail(&fields);
    let body = futures_util::stream::once(async { Ok::<_, reqwest::Error>(head) })
        .chain(source.bytes_stream())
        .chain(futures_util::stream::once(async { Ok(tail) }));
    let content_type = form.content_type();
    let response = to
        .comfy
        .upload(
            UploadRoute::Image.path(),
            &content_type,
            reqwest::Body::wrap_stream(body),
        )
        .await?;
    let named = stored(response, &to.upstream.url_for(UploadRoute::Image.path()))
        .await?
        .file();
    if named != *file {
        tracing::info!(
            file = %file.filename,
            to = to.key(),
            named = %named.filename,
            "another ComfyUI server holds another picture of an upload's name: the copy is named anew"
        );
    }
    to.holds_input(file.clone(), named.clone());
    Ok(named)
}

/// What ComfyUI (at `url`) says it stored, from its answer to an upload.
async fn stored(response: reqwest::Response, url: &url::Url) -> Result<UploadedImage, UploadError> {
    let status = response.status();
    let text = response.text().await.map_err(|e| RelayError::Failed {
        url: url.to_string(),
        detail: error_chain(&e),
    })?;
    if !status.is_success() {
        return Err(UploadError::ComfyUi {
            status: status.as_u16(),
            text,
        });
    }
    serde_json::from_str(&text).map_err(|_| UploadError::ComfyUi {
        status: status.as_u16(),
        text,
    })
}

/// A receiver as a stream, without pulling in tokio-stream.
fn receiver_stream(
    mut rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Reads a request as a multipart form, refusing a declared body over the limit at once.
pub async fn multipart_form(state: &AppState, request: Request) -> Result<Multipart, UploadError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.max_upload_bytes + FORM_OVERHEAD) {
        return Err(UploadError::TooLarge(state.max_upload_bytes));
    }
    Multipart::from_request(request, state)
        .await
        .map_err(|e| UploadError::BadForm(format!("The upload is not a form: {}", e.body_text())))
}

/// `POST /upload/image` and `/upload/mask` (both also under `/api`): checked and streamed to
/// ComfyUI. A mask goes over a picture the device may view; ComfyUI saves that picture with the
/// mask as its alpha channel into the input folder.
pub async fn upload(
    route: UploadRoute,
    state: AppState,
    device: DeviceId,
    request: Request,
) -> Result<Json<UploadedImage>, UploadError> {
    let multipart = multipart_form(&state, request).await?;
    let (uploaded, _) = stream_image(&state, &device, route, multipart, |_| Ok(())).await?;
    tracing::info!(
        name = %uploaded.name,
        subfolder = %uploaded.subfolder,
        route = route.path(),
        "uploaded"
    );
    Ok(Json(uploaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_upload_to_another_server_than_the_first_is_named_anew_keeping_its_extension() {
        assert_eq!(landing_name("phone.png".to_owned(), true), "phone.png");
        let marked = landing_name("phone.png".to_owned(), false);
        let mark = marked
            .strip_prefix("phone-")
            .and_then(|rest| rest.strip_suffix(".png"))
            .unwrap();
        assert!(
            mark.len() == 8 && mark.bytes().all(|b| b.is_ascii_hexdigit()),
            "{marked}"
        );
        assert_ne!(marked, landing_name("phone.png".to_owned(), false));
        assert!(landing_name("upload".to_owned(), false).starts_with("upload-"));
    }

    #[test]
    fn the_four_formats_comfyui_reads_are_recognised_by_their_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Ok(ImageKind::Png));
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F']),
            Ok(ImageKind::Jpeg)
        );
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Ok(ImageKind::Gif));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Ok(ImageKind::Webp));
    }

    #[test]
    fn anything_else_is_refused_with_a_hint_for_phone_photos() {
        assert!(
            sniff(b"notes: buy milk")
                .unwrap_err()
                .contains("not an image")
        );
        assert!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0")
                .unwrap_err()
                .contains("HEIC")
        );
        assert!(
            sniff(b"\0\0\0\x1cftypavif\0\0\0\0")
                .unwrap_err()
                .contains("AVIF")
        );
        assert!(sniff(b"").is_err());
    }

    #[test]
    fn file_names_become_safe_base_names_with_the_true_extension() {
        assert_eq!(safe_filename("../../evil.png", ImageKind::Png), "evil.png");
        assert_eq!(
            safe_filename("C:\\photos\\IMG_1.JPG", ImageKind::Jpeg),
            "IMG_1.jpg"
        );
        assert_eq!(safe_filename("photo.heic", ImageKind::Jpeg), "photo.jpg");
        assert_eq!(safe_filename(".htaccess", ImageKind::Png), "htaccess.png");
        assert_eq!(safe_filename("", ImageKind::Gif), "upload.gif");
        assert_eq!(safe_filename("a\u{0}b\"c.png", ImageKind::Png), "abc.png");
        assert_eq!(
            safe_filename(&"x".repeat(300), ImageKind::Png).len(),
            MAX_NAME + 4
        );
    }

    #[test]
    fn subfolders_are_simple_names_only() {
        assert_eq!(safe_subfolder("mobile").unwrap(), "mobile");
        assert_eq!(safe_subfolder("/team/anna/").unwrap(), "team/anna");
        assert_eq!(safe_subfolder("").unwrap(), "");
        for bad in ["../../tmp", "a/b/c", "x y", "..", "a\\b"] {
            assert!(safe_subfolder(bad).is_err(), "{bad}");
        }
    }
}
