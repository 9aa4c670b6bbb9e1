//! The crypto provider behind outbound HTTPS (room-change webhooks). reqwest 0.13 bundles only the
//! aws-lc-rs provider, a heavy C build; Weaver uses reqwest without one and installs ring
//! (what reqwest 0.12 used, already in the tree) as rustls's process default. Every reqwest
//! client of this crate is built through [`client_builder`], so it never meets a missing provider.

/// `reqwest::Client::builder()` once a rustls crypto provider is installed.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    // Fails only when a provider is already installed (by an earlier call, the weaver binary
    // or an embedding application): either way the process has one, which is all reqwest needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
