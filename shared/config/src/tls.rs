//! A function's start, and `SSL_CERT_FILE`, checked before anything reads it: the template points it at Amazon Linux
//! 2023's CA bundle (one file instead of scanning a directory halves the cold start), and a
//! runtime without that file must not lose TLS to AWS and the PSPs over it.

use std::path::Path;

/// What start-up found in `SSL_CERT_FILE`, to be logged once logging is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertFile {
    /// Not set: TLS clients use the system's certificate directory.
    Unset,
    /// Set to a readable file, which TLS clients load.
    Usable(String),
    /// Set to a path with no readable file: removed from the environment, so TLS clients use
    /// the system's roots instead (log this at WARN).
    Missing(String),
}

/// Runs a function's `main`: checks `SSL_CERT_FILE` while the process has one thread, then
/// starts the Tokio runtime, installs the logs ([`crate::init_logging`]), says what it found in
/// `SSL_CERT_FILE`, and runs `run` to the end.
pub fn start<F, E>(run: impl FnOnce() -> F) -> Result<(), E>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: From<std::io::Error>,
{
    let cert_file = ensure_usable_cert_file();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        crate::init_logging();
        cert_file.log();
        run().await
    })
}

/// Checks `SSL_CERT_FILE` and, when it names no readable file, removes it from the environment.
///
/// Call it first in `main`, before the async runtime or anything else starts a thread: changing
/// the environment is only sound while the process has one thread.
pub fn ensure_usable_cert_file() -> CertFile {
    let Some(path) = std::env::var_os("SSL_CERT_FILE") else {
        return CertFile::Unset;
    };
    let shown = path.to_string_lossy().into_owned();
    if Path::new(&path).is_file() && std::fs::File::open(&path).is_ok() {
        return CertFile::Usable(shown);
    }
    // SAFETY: called at the top of `main`, while the process has a single thread (the
    // functions' `main` builds the Tokio runtime only after this returns).
    unsafe { std::env::remove_var("SSL_CERT_FILE") };
    CertFile::Missing(shown)
}

impl CertFile {
    /// Logs what was found; a missing file at WARN, with what happens instead.
    pub fn log(&self) {
        match self {
            CertFile::Missing(path) => tracing::warn!(
                ssl_cert_file = %path,
                "SSL_CERT_FILE names no readable file: using the system's root certificates instead (slower start-up); fix the setting"
            ),
            CertFile::Usable(path) => tracing::debug!(ssl_cert_file = %path, "CA bundle"),
            CertFile::Unset => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test changes the variable from start to end: nextest runs it in a process of its own.
    #[test]
    fn a_missing_bundle_is_dropped_so_tls_uses_the_system_roots() {
        // SAFETY: this test's process has no other thread using the environment.
        unsafe { std::env::remove_var("SSL_CERT_FILE") };
        assert_eq!(ensure_usable_cert_file(), CertFile::Unset);
        let bundle = std::env::temp_dir().join(format!("ca-{}.pem", std::process::id()));
        std::fs::write(&bundle, "-----BEGIN CERTIFICATE-----\n").unwrap();
        unsafe { std::env::set_var("SSL_CERT_FILE", &bundle) };
        assert!(matches!(ensure_usable_cert_file(), CertFile::Usable(_)));
        assert!(
            std::env::var_os("SSL_CERT_FILE").is_some(),
            "a usable file stays"
        );
        std::fs::remove_file(&bundle).unwrap();
        assert!(matches!(ensure_usable_cert_file(), CertFile::Missing(p) if p.ends_with(".pem")));
        assert!(
            std::env::var_os("SSL_CERT_FILE").is_none(),
            "a missing one is dropped"
        );
    }
}
