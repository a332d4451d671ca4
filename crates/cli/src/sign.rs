//! The signing options `klpforge build` and `klpforge module` share.

use std::path::PathBuf;

use clap::Args;

/// `--sign-key KEY --sign-cert CERT`: sign the finished module with the kernel's sign-file.
#[derive(Args, Debug, Clone, Default)]
pub struct SignArgs {
    /// Sign the module with this private key (PEM), with the kernel's sign-file.
    #[arg(long, value_name = "KEY", requires = "sign_cert")]
    pub sign_key: Option<PathBuf>,
    /// The certificate (PEM or DER) of the signing key.
    #[arg(long, value_name = "CERT", requires = "sign_key")]
    pub sign_cert: Option<PathBuf>,
}

impl SignArgs {
    /// The key and the certificate as absolute paths (the module is built in another
    /// directory), when both are given.
    pub fn key_and_cert(&self) -> std::io::Result<Option<(PathBuf, PathBuf)>> {
        match (&self.sign_key, &self.sign_cert) {
            (Some(k), Some(c)) => Ok(Some((std::path::absolute(k)?, std::path::absolute(c)?))),
            _ => Ok(None),
        }
    }
}
