//! `bench-load`: how fast the app becomes usable on a slow phone.
//!
//! Serves the built app (`dist/`) from the relay in front of the ComfyUI double, then loads it
//! in headless Chromium at a phone viewport with the CPU throttled 4x (Chrome DevTools'
//! "mid-tier mobile"), from a fresh profile each time (nothing cached). Prints, per load and as
//! medians: when the page was parsed (DOMContentLoaded), when the app was mounted and usable
//! (`comfy-relay:mounted`), and when its event socket delivered the device's jobs
//! (`comfy-relay:live`), all from navigation start; then the same for a reload with a warm cache.

use clap::Parser;
use serde_json::{Value, json};
use testkit::app;
use testkit::browser::{Browser, Viewport};

/// Measures the app's time to interactive under CPU throttling.
#[derive(Parser)]
#[command(name = "bench-load", about)]
struct Args {
    /// How many cold loads to measure.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// CPU slowdown factor.
    #[arg(long, default_value_t = 4.0)]
    throttle: f64,
}

const TIMINGS: &str = "
    const nav = performance.getEntriesByType('navigation')[0];
    const mark = name => (performance.getEntriesByName(name)[0] || {}).startTime || null;
    return { dcl: nav.domContentLoadedEventEnd, mounted: mark('comfy-relay:mounted'),
             live: mark('comfy-relay:live'), transferred: performance.getEntriesByType('resource')
               .reduce((sum, r) => sum + r.transferSize, nav.transferSize) };";

async fn measure(browser: &Browser) -> Value {
    browser.wait_for_text("connection", |t| t == "Live").await;
    browser.eval(TIMINGS).await
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn ms(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let stack = app::spawn_stack(1.0).await;
    let (mut dcl, mut mounted, mut live) = (Vec::new(), Vec::new(), Vec::new());
    let mut warm = None;
    println!(
        "loading {} at a 390x844 phone viewport, CPU throttled {}x",
        stack.relay_url(),
        args.throttle
    );
    for run in 1..=args.runs {
        let browser = Browser::launch(Viewport::Phone).await;
        browser
            .cdp(
                "Emulation.setCPUThrottlingRate",
                json!({ "rate": args.throttle }),
            )
            .await;
        browser.goto(&stack.relay_url()).await;
        let cold = measure(&browser).await;
        println!(
            "cold load {run}: DOMContentLoaded {:.0} ms, mounted {:.0} ms, live {:.0} ms, {} bytes transferred",
            ms(&cold["dcl"]),
            ms(&cold["mounted"]),
            ms(&cold["live"]),
            cold["transferred"]
        );
        dcl.push(ms(&cold["dcl"]));
        mounted.push(ms(&cold["mounted"]));
        live.push(ms(&cold["live"]));
        if run == args.runs {
            browser.client.refresh().await.expect("the page reloads");
            warm = Some(measure(&browser).await);
        }
        browser.close().await;
    }
    println!(
        "median of {} cold loads: DOMContentLoaded {:.0} ms, interactive (mounted) {:.0} ms, live {:.0} ms",
        args.runs,
        median(&mut dcl),
        median(&mut mounted),
        median(&mut live)
    );
    if let Some(warm) = warm {
        println!(
            "warm reload: mounted {:.0} ms, live {:.0} ms, {} bytes transferred",
            ms(&warm["mounted"]),
            ms(&warm["live"]),
            warm["transferred"]
        );
    }
}
