//! This tab's identity towards ComfyUI.

/// The key under which the tab keeps its client id.
const CLIENT_ID_KEY: &str = "comfy-relay.client-id";

/// 32 lowercase hex digits, like ComfyUI's own client ids.
fn random_hex_id() -> String {
    let mut bytes = [0u8; 16];
    // getRandomValues works on plain-http LAN pages, unlike crypto.randomUUID.
    if let Some(crypto) = web_sys::window().and_then(|w| w.crypto().ok()) {
        let _ = crypto.get_random_values_with_u8_array(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tab's client id: kept in sessionStorage, so a reload keeps it and another tab gets its own.
pub fn tab_client_id() -> String {
    let storage = web_sys::window().and_then(|w| w.session_storage().ok().flatten());
    if let Some(id) = storage
        .as_ref()
        .and_then(|s| s.get_item(CLIENT_ID_KEY).ok().flatten())
    {
        return id;
    }
    let id = random_hex_id();
    if let Some(storage) = storage {
        let _ = storage.set_item(CLIENT_ID_KEY, &id);
    }
    id
}
