//! `/ui`: the read-only shelf view for operators, as three static files compiled into the
//! binary (no build step, nothing fetched from elsewhere).
//!
//! The files themselves need no token: they hold no data. The page asks the operator for
//! a bearer token (or takes it from the URL fragment `#token=...`, which browsers never
//! send to the server), keeps it in `sessionStorage`, and reads everything through the
//! ordinary `/v1` API. **Invariant:** the page only ever sends GET requests and puts data
//! into the DOM as text, never as markup; a unit test below checks the script for both.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// Only this origin's own script, style and API; no framing, no referrer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        // Served from the binary: a new controller version brings new files.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body)
}

/// `GET /ui`: the page.
pub async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/app.js`.
pub async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/style.css`.
pub async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_only_reads_and_never_parses_data_as_markup() {
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!APP_JS.contains(banned), "app.js uses {banned}");
        }
        // Every request goes through one helper that sends GET.
        assert_eq!(
            APP_JS.matches("fetch(").count(),
            1,
            "app.js must call fetch in exactly one place"
        );
        assert!(APP_JS.contains("method: \"GET\""), "the fetch helper must pin the method to GET");
        for verb in ["\"POST\"", "\"PATCH\"", "\"PUT\"", "\"DELETE\""] {
            assert!(!APP_JS.contains(verb), "app.js mentions {verb}");
        }
    }

    /// The console pane shows each line's `shown` (the API's rendering with every control
    /// character visible, `api::console::shown`, tested there) as a text node.
    #[test]
    fn the_console_is_shown_as_the_apis_visible_text_in_text_nodes() {
        assert!(INDEX_HTML.contains("id=\"console\""), "the page has a console pane");
        assert!(
            APP_JS.contains("el(\"div\", { class: \"line\", title: iso(l.at) }, String(l.shown))")
        );
        assert!(
            !APP_JS.contains("l.text") && !APP_JS.contains("raw_hex"),
            "raw text is never shown"
        );
        assert!(!APP_JS.contains("textContent = l."), "lines go through el(), as text nodes");
    }

    /// A tile shows model, power, owner and the last boot's diagnosis; every stage a
    /// boot can fail at has its words in the script and its colour in the style sheet.
    #[test]
    fn tiles_show_model_power_owner_and_a_coloured_diagnosis_for_every_failed_stage() {
        use crate::diagnosis::{BootPhase, DiagnosisKind};
        for text in [
            "modelText(pi.model)",
            "\"power power-\" + pi.power",
            "pi.owner || \"unowned\"",
            "diagnosisText(pi.last_boot)",
            "drawText(pi)",
        ] {
            assert!(APP_JS.contains(text), "app.js lacks {text}");
        }
        let stages = [
            BootPhase::PowerOn,
            BootPhase::Dhcp,
            BootPhase::Tftp,
            BootPhase::Kernel,
            BootPhase::System,
        ];
        for stage in stages {
            let name = serde_json::to_value(stage).unwrap();
            let name = name.as_str().unwrap();
            assert!(
                APP_JS.contains(&format!("  {name}: \"")),
                "app.js has no words for stage {name}"
            );
            assert!(
                STYLE_CSS.contains(&format!(".port.diag-{name} {{")),
                "no tile colour for {name}"
            );
            assert!(
                STYLE_CSS.contains(&format!(".swatch.diag-{name} {{")),
                "no legend colour for {name}"
            );
        }
        for kind in DiagnosisKind::ALL.into_iter().filter(|k| *k != DiagnosisKind::Booted) {
            assert!(
                APP_JS.contains(&format!("  {}: \"", kind.as_str())),
                "app.js has no words for {}",
                kind.as_str()
            );
        }
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(
                !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
                "an external URL in the UI"
            );
        }
        assert!(
            INDEX_HTML.contains("src=\"/ui/app.js\"")
                && INDEX_HTML.contains("href=\"/ui/style.css\"")
        );
    }
}
