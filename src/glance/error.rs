//! Errors of the Glance client, each classified by an [`ErrorKind`] mapped from the HTTP
//! status, so callers decide retries and not-found handling on the kind, never on text.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::protocol::ImageStatus;

/// What went wrong, independent of the wording of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404: the image (or endpoint) does not exist.
    NotFound,
    /// 409: the image is in a state that forbids the call (e.g. PUT on an active image).
    Conflict,
    /// 401, or Keystone refused the credentials.
    Auth,
    /// 403: authenticated, but not allowed (e.g. a member making an image public, or a
    /// read-only field such as `checksum`).
    Forbidden,
    /// Any other 4xx: the request itself is invalid.
    BadRequest,
    /// 415: Glance refused the data, e.g. `disk_format` does not match the bytes.
    UnsupportedMedia,
    /// 5xx, 429 or no answer at all: trying again later may succeed.
    Transient,
    /// No usable cloud configuration (clouds.yaml, `OS_*`, catalog).
    Config,
    /// Glance answered something this client does not understand.
    Protocol,
    /// The local body stream failed while sending it.
    Body,
    /// A wait gave up: the image did not reach the wanted status in time.
    Timeout,
    /// The image reached a status from which the wanted one cannot follow.
    ImageFailed,
}

impl ErrorKind {
    /// Classifies an HTTP error status.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 => Self::Auth,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            409 => Self::Conflict,
            415 => Self::UnsupportedMedia,
            429 | 500..=599 => Self::Transient,
            _ => Self::BadRequest,
        }
    }

    /// Classifies an error osauth reports (token refresh, endpoint lookup, transport).
    pub fn from_osauth(kind: osauth::ErrorKind) -> Self {
        use osauth::ErrorKind as K;
        match kind {
            K::AuthenticationFailed => Self::Auth,
            K::AccessDenied => Self::Forbidden,
            K::ResourceNotFound => Self::NotFound,
            K::Conflict => Self::Conflict,
            K::EndpointNotFound | K::InvalidConfig | K::IncompatibleApiVersion => Self::Config,
            K::ProtocolError | K::InternalServerError | K::OperationTimedOut => Self::Transient,
            K::InvalidResponse => Self::Protocol,
            _ => Self::BadRequest,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotFound => "not found",
            Self::Conflict => "conflict",
            Self::Auth => "authentication failed",
            Self::Forbidden => "forbidden",
            Self::BadRequest => "bad request",
            Self::UnsupportedMedia => "unsupported media",
            Self::Transient => "temporary failure",
            Self::Config => "configuration error",
            Self::Protocol => "protocol error",
            Self::Body => "body stream failed",
            Self::Timeout => "timed out",
            Self::ImageFailed => "image failed",
        })
    }
}

/// A failed Glance call, cloud configuration or wait.
///
/// Messages never contain tokens or passwords: only method, path, status and an excerpt of
/// the server's answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Glance answered with an HTTP error status.
    #[error("{operation}: Glance answered HTTP {status} ({kind}): {body}{}", status_hint(*status))]
    Http {
        /// Method, path and cloud of the call.
        operation: String,
        /// The HTTP status code.
        status: u16,
        /// The status classified.
        kind: ErrorKind,
        /// The start of the response body, tags and extra whitespace removed.
        body: String,
    },
    /// The request did not get an HTTP answer (connection, token refresh, endpoint lookup).
    #[error("{operation}: no answer")]
    Transport {
        /// Method, path and cloud of the call.
        operation: String,
        /// The cause, as osauth reports it.
        #[source]
        source: osauth::Error,
    },
    /// Nothing moved for the cloud's `api_timeout`: no answer, and (for an upload) no data
    /// taken; the request was abandoned.
    #[error(
        "{operation}: nothing moved for {seconds} s (no answer and no data taken), so the \
         request was abandoned; raise `api_timeout` in clouds.yaml if the cloud is this slow"
    )]
    Silent {
        /// Method, path and cloud of the call.
        operation: String,
        /// The limit.
        seconds: u64,
    },
    /// The local stream feeding a request body failed, so the request was aborted.
    #[error("{operation}: reading the data to send failed")]
    Body {
        /// Method, path and cloud of the call.
        operation: String,
        /// The stream's error.
        #[source]
        source: io::Error,
    },
    /// Glance's answer could not be decoded.
    #[error("{operation}: cannot decode Glance's answer")]
    Decode {
        /// Method, path and cloud of the call.
        operation: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// Authenticating to the cloud or finding its image endpoint failed.
    #[error("cannot open a session on cloud {cloud}")]
    Connect {
        /// The clouds.yaml entry, or `OS_* environment`.
        cloud: String,
        /// The cause, as osauth reports it.
        #[source]
        source: osauth::Error,
    },
    /// There is no usable cloud configuration.
    #[error("{message}")]
    Config {
        /// What is missing or wrong, naming the file when there is one.
        message: String,
    },
    /// clouds.yaml could not be read.
    #[error("cannot read {}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The image did not reach the wanted status before the timeout.
    #[error(
        "image {id} ({name}) is still {last} after waiting {waited:?} for it to become {wanted}"
    )]
    Timeout {
        /// Image id.
        id: String,
        /// Image name, or `-`.
        name: String,
        /// The status waited for.
        wanted: ImageStatus,
        /// The last status seen.
        last: ImageStatus,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// The image reached a status from which the wanted one cannot follow.
    #[error("image {id} ({name}) became {status} while waiting for it to become {wanted}")]
    ImageFailed {
        /// Image id.
        id: String,
        /// Image name, or `-`.
        name: String,
        /// The status reached.
        status: ImageStatus,
        /// The status waited for.
        wanted: ImageStatus,
    },
    /// Glance gave up an import: `os_glance_failed_import` names the stores, and the image's
    /// import task says why.
    #[error(
        "the import of image {id} failed in store(s) {stores}: {reason} (from Glance's import \
         task; `GET /v2/images/{id}/tasks` has the details)"
    )]
    ImportFailed {
        /// Image id.
        id: String,
        /// `os_glance_failed_import`.
        stores: String,
        /// The failed task's message, or what is known instead.
        reason: String,
    },
}

/// What an error status means for the person reading it, when the body may not say.
fn status_hint(status: u16) -> &'static str {
    match status {
        413 => {
            " (the cloud caps the size of an image, with Glance's `image_size_cap` or a \
                storage quota: the image must be smaller, or the cloud's operator must raise \
                the limit; trying again cannot help)"
        }
        _ => "",
    }
}

impl Error {
    /// The class of this error, for retry and not-found decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Http { kind, .. } => *kind,
            Self::Transport { source, .. } | Self::Connect { source, .. } => {
                ErrorKind::from_osauth(source.kind())
            }
            Self::Body { .. } => ErrorKind::Body,
            Self::Silent { .. } => ErrorKind::Transient,
            Self::Decode { .. } => ErrorKind::Protocol,
            Self::Config { .. } | Self::ReadConfig { .. } => ErrorKind::Config,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::ImageFailed { .. } | Self::ImportFailed { .. } => ErrorKind::ImageFailed,
        }
    }

    /// Whether the same call may succeed if tried again later.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// The HTTP status Glance answered, if it answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Longest response-body excerpt kept in an error.
const EXCERPT_CHARS: usize = 400;

/// Shortens a response body for an error message: Glance answers errors with small HTML
/// pages, so tags are dropped and whitespace collapsed before cutting.
pub(crate) fn excerpt(body: &str) -> String {
    let mut text = String::with_capacity(body.len().min(EXCERPT_CHARS * 2));
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = String::new();
    for w in words {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
        if out.chars().count() > EXCERPT_CHARS {
            let cut: String = out.chars().take(EXCERPT_CHARS).collect();
            return format!("{cut}…");
        }
    }
    if out.is_empty() {
        "(empty body)".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(ErrorKind::from_status(404), ErrorKind::NotFound);
        assert_eq!(ErrorKind::from_status(409), ErrorKind::Conflict);
        assert_eq!(ErrorKind::from_status(401), ErrorKind::Auth);
        assert_eq!(ErrorKind::from_status(403), ErrorKind::Forbidden);
        assert_eq!(ErrorKind::from_status(415), ErrorKind::UnsupportedMedia);
        assert_eq!(ErrorKind::from_status(400), ErrorKind::BadRequest);
        assert_eq!(ErrorKind::from_status(413), ErrorKind::BadRequest);
        assert_eq!(ErrorKind::from_status(429), ErrorKind::Transient);
        assert_eq!(ErrorKind::from_status(503), ErrorKind::Transient);
    }

    #[test]
    fn excerpt_strips_html_and_cuts() {
        let body = "<html>\n <head><title>415 Unsupported Media Type</title></head>\n<body>\n  \
                    <h1>415 Unsupported Media Type</h1>\n Image   data does not match.\n</body></html>";
        assert_eq!(
            excerpt(body),
            "415 Unsupported Media Type 415 Unsupported Media Type Image data does not match."
        );
        let long = "é".repeat(1000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("  "), "(empty body)");
    }

    #[test]
    fn display_names_operation_status_and_body() {
        let e = Error::Http {
            operation: "PUT /v2/images/x/file on cloud local".into(),
            status: 409,
            kind: ErrorKind::Conflict,
            body: "Image status transition from saving to saving is not allowed".into(),
        };
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.status(), Some(409));
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "PUT /v2/images/x/file on cloud local: Glance answered HTTP 409 (conflict): \
             Image status transition from saving to saving is not allowed"
        );
    }
}
