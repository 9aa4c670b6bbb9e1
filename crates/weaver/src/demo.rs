//! The web demo (web-demo/dist), embedded in the binary and served at `/`.
//!
//! The page is built by Vite with stable file names and committed to git (web-demo/README.md
//! says why), so neither building nor running `weaver` needs Node. Each file is served with its
//! content type, `Cache-Control: no-cache` (the names carry no content hash, so browsers must
//! revalidate) and a strong ETag derived from the bytes, so a revalidation is a cheap 304.
//! Deliberately not here: the WebSocket relay on `/{room}` and the HTTP API under `/api/`; this
//! module only serves static bytes and never touches the disk.

use std::hash::{DefaultHasher, Hasher};
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file of web-demo/dist.
struct Asset {
    /// Path relative to dist/, as the page and the service worker request it.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file of web-demo/dist. A test checks this list against the directory, so a build that
/// adds a file cannot silently ship without it.
const ASSETS: &[Asset] = &[
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../../web-demo/dist/index.html"),
    },
    Asset {
        path: "sw.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../web-demo/dist/sw.js"),
    },
    Asset {
        path: "assets/index.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../web-demo/dist/assets/index.js"),
    },
    Asset {
        path: "assets/index.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../web-demo/dist/assets/index.css"),
    },
];

/// Strong ETags, one per asset (same order as `ASSETS`), computed once on first use.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            // Two differently seeded 64-bit hashes: collisions between two builds of the same
            // file are not a practical concern for cache validation.
            let mut h1 = DefaultHasher::new();
            h1.write(a.bytes);
            let mut h2 = DefaultHasher::new();
            h2.write_usize(a.bytes.len());
            h2.write(a.bytes);
            let tag = format!("\"{:016x}{:016x}\"", h1.finish(), h2.finish());
            HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
        })
        .collect()
});

/// Routes of the demo: `/`, `/index.html`, `/sw.js` and `/assets/{file}`. Merge it into the
/// server's router; it has no state and no fallback, so it takes nothing from other routes.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/index.html",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        // The service worker must be served from the root to control the whole page.
        .route(
            "/sw.js",
            get(|headers: HeaderMap| async move { serve("sw.js", &headers) }),
        )
        .route(
            "/assets/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&format!("assets/{file}"), &headers)
            }),
        )
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let asset = &ASSETS[i];
    let Some(etag) = ETAGS.get(i).cloned() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "asset table mismatch\n").into_response();
    };
    let headers = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag.clone()),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if if_none_match(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        StatusCode::OK,
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.bytes,
    )
        .into_response()
}

/// Whether `If-None-Match` names `etag` (or `*`). Weak comparison, as RFC 9110 asks for GET.
fn if_none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(ours) = etag.to_str() else {
        return false;
    };
    request.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str().is_ok_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path as FsPath, PathBuf};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn dist_dir() -> PathBuf {
        FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../web-demo/dist")
    }

    fn files_under(dir: &FsPath, prefix: &str, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                files_under(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name);
            }
        }
    }

    #[test]
    fn every_built_file_is_embedded_and_current() {
        let mut on_disk = BTreeSet::new();
        files_under(&dist_dir(), "", &mut on_disk);
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        assert_eq!(
            on_disk, embedded,
            "web-demo/dist and demo.rs ASSETS list different files"
        );
        for a in ASSETS {
            assert_eq!(
                std::fs::read(dist_dir().join(a.path)).unwrap(),
                a.bytes,
                "{}",
                a.path
            );
        }
    }

    /// Sends one raw HTTP/1.1 request and returns (status, lower-cased header lines, body).
    async fn request(
        addr: std::net::SocketAddr,
        path: &str,
        extra: &str,
    ) -> (u16, String, Vec<u8>) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(buf[..split].to_vec()).unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), buf[split + 4..].to_vec())
    }

    fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }

    #[tokio::test]
    async fn serves_the_page_with_types_validators_and_404s() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router()).await });

        let (status, head, body) = request(addr, "/", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            header_value(&head, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(header_value(&head, "cache-control"), Some("no-cache"));
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("./assets/index.js")
        );
        let etag = header_value(&head, "etag").unwrap().to_string();

        let (status, _, body) = request(addr, "/", &format!("If-None-Match: {etag}\r\n")).await;
        assert_eq!(status, 304);
        assert!(body.is_empty());
        let (status, _, _) = request(addr, "/", "If-None-Match: \"other\"\r\n").await;
        assert_eq!(status, 200);

        let (status, head, body) = request(addr, "/assets/index.js", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            header_value(&head, "content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(body.len(), ASSETS[2].bytes.len());
        let (status, head, _) = request(addr, "/assets/index.css", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            header_value(&head, "content-type"),
            Some("text/css; charset=utf-8")
        );
        let (status, head, _) = request(addr, "/sw.js", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            header_value(&head, "content-type"),
            Some("text/javascript; charset=utf-8")
        );

        assert_eq!(request(addr, "/assets/missing.js", "").await.0, 404);
        assert_eq!(request(addr, "/assets/..%2Fsw.js", "").await.0, 404);
        server.abort();
    }
}
