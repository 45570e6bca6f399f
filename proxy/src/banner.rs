//! What the relay prints when it starts: where people can open it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::tls::Tls;

/// The URLs (`scheme://`) that reach a relay listening on `listen`: loopback first, then
/// every non-loopback IPv4 address of this machine when it listens on all interfaces.
pub fn urls(scheme: &str, listen: SocketAddr, interfaces: &[IpAddr]) -> Vec<String> {
    let port = listen.port();
    if !listen.ip().is_unspecified() {
        return vec![format!("{scheme}://{listen}")];
    }
    let lan = interfaces
        .iter()
        .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
        .map(|ip| format!("{scheme}://{ip}:{port}"));
    std::iter::once(format!("{scheme}://{}:{port}", Ipv4Addr::LOCALHOST))
        .chain(lan)
        .collect()
}

/// This machine's interface addresses (empty if they cannot be listed).
pub fn interface_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|interfaces| interfaces.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// A QR code of `text` drawn with Unicode half blocks, dark on light, for a terminal.
pub fn qr_code(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
    )
}

/// Prints the banner to stdout, for the person who started the relay: where to open it; with
/// its own certificate authority, the page that tells phones how to trust it; and, when
/// devices must pair, the pairing link with its QR code.
pub fn print(listen: SocketAddr, pairing_path: Option<&str>, tls: Option<&Tls>) {
    let interfaces = interface_addresses();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let urls = urls(scheme, listen, &interfaces);
    println!("Comfy Relay is running. Open it at:");
    for (index, url) in urls.iter().enumerate() {
        let label = if index == 0 {
            "this machine"
        } else {
            "on the LAN"
        };
        println!("  {url}   ({label})");
    }
    if listen.ip().is_unspecified() && urls.len() == 1 {
        println!("  (no LAN address found: is this machine on a network?)");
    }
    if tls.is_some_and(|tls| tls.authority().is_some()) {
        let plain = self::urls("http", listen, &interfaces);
        let page = format!("{}/tls", plain.last().map_or("", String::as_str));
        println!();
        println!("HTTPS uses this relay's own certificate authority. On each phone, once, open");
        println!("this page (plain HTTP) and follow its steps to trust it:");
        println!("  {page}");
        if let Some(qr) = qr_code(&page) {
            println!("{qr}");
        }
    }
    let Some(path) = pairing_path else {
        return;
    };
    // The last address is a LAN one when there is one: what a phone can reach.
    let link = format!("{}{path}", urls.last().map_or("", String::as_str));
    println!();
    println!("Devices must pair first. Scan this code with the phone, or open this link on it:");
    println!("  {link}");
    if let Some(qr) = qr_code(&link) {
        println!("{qr}");
    }
    println!(
        "Anyone with this link can use ComfyUI through the relay: share it only with your team."
    );
    println!(
        "`comfy-relay devices` lists paired devices; `comfy-relay devices revoke ID` unpairs one."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_everywhere_lists_loopback_then_each_lan_ipv4() {
        let interfaces: Vec<IpAddr> = ["127.0.0.1", "192.168.1.20", "::1", "fe80::1", "10.0.0.7"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        assert_eq!(
            urls("http", "0.0.0.0:8189".parse().unwrap(), &interfaces),
            [
                "http://127.0.0.1:8189",
                "http://192.168.1.20:8189",
                "http://10.0.0.7:8189"
            ]
        );
    }

    #[test]
    fn a_pairing_link_makes_a_square_qr_code() {
        let qr = qr_code("http://192.168.1.20:8189/pair?token=0123456789abcdef0123456789abcdef")
            .unwrap();
        let rows: Vec<&str> = qr.lines().collect();
        assert!(rows.len() > 10);
        let width = rows[0].chars().count();
        assert!(rows.iter().all(|row| row.chars().count() == width));
        assert!(
            (width as f64 / (rows.len() as f64 * 2.0) - 1.0).abs() < 0.1,
            "two modules per row"
        );
    }

    #[test]
    fn listening_on_one_address_lists_only_it() {
        assert_eq!(
            urls("https", "127.0.0.1:9000".parse().unwrap(), &[]),
            ["https://127.0.0.1:9000"]
        );
    }
}
