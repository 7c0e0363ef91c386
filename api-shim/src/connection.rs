//! A Redis client from a URL, the configured credentials and CA: the one
//! way the standalone backend and the sentinel follower both connect.

use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, TlsCertificates,
};

use crate::config::RedisAuth;

/// `info` with the configured credentials, if any (otherwise the URL's own).
pub(crate) fn with_auth(info: ConnectionInfo, auth: &RedisAuth) -> ConnectionInfo {
    let Some(password) = &auth.password else {
        return info;
    };
    let mut settings = info.redis_settings().clone().set_password(password);
    if let Some(user) = &auth.username {
        settings = settings.set_username(user);
    }
    info.set_redis_settings(settings)
}

/// The CA certificates for `rediss://`, as the redis crate takes them: they
/// replace the system roots.
pub(crate) fn tls_certs(ca: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    }
}

/// A client for `info`; a TLS one trusts `tls_ca` (instead of the system
/// roots) when it is set.
pub(crate) fn client(info: ConnectionInfo, tls_ca: Option<&[u8]>) -> Result<Client, RedisError> {
    match (tls_ca, info.addr()) {
        (Some(ca), ConnectionAddr::TcpTls { .. }) => Client::build_with_tls(info, tls_certs(ca)),
        _ => Client::open(info),
    }
}

/// A client for `url` with `auth` and the CA of `[redis] tls_ca_file`.
pub(crate) fn client_for(
    url: &str,
    auth: &RedisAuth,
    tls_ca: Option<&[u8]>,
) -> Result<Client, RedisError> {
    client(with_auth(url.into_connection_info()?, auth), tls_ca)
}
