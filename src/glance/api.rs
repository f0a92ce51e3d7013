//! The Glance v2 calls, one async fn per HTTP request, on an authenticated [`Glance`] client.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::error::{excerpt, Error, ErrorKind};
use super::protocol::{
    Image, ImageList, ImageStatus, ImportInfo, ImportMethod, ImportRequest, NewImage, PatchOp,
    TaskList,
};

/// Media type Glance requires for `PATCH /v2/images/{id}`.
const JSON_PATCH: &str = "application/openstack-images-v2.1-json-patch";
/// Page size asked for when listing.
const PAGE: &str = "100";

/// An authenticated client of one cloud's image service (v2).
///
/// Holds an osauth session, which refreshes the token when it expires; its `Debug` shows the
/// cloud and endpoint only, never credentials.
pub struct Glance {
    cloud: String,
    session: osauth::Session,
    /// The v2 root, e.g. `http://127.0.0.1:19292/v2`.
    base: Url,
    /// How long a call may go without anything moving before it is abandoned.
    silence: Duration,
}

/// Default of [`Glance::with_api_timeout`]: long enough for a slow store, short enough that a
/// server that accepted a connection and then went quiet does not hang a nightly.
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(120);

/// When a request last made progress, in milliseconds since it started.
#[derive(Debug, Clone)]
struct Progress {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Self {
        Progress {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl fmt::Debug for Glance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Glance")
            .field("cloud", &self.cloud)
            .field("base", &self.base.as_str())
            .finish()
    }
}

/// Which images a listing returns with respect to `os_hidden`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Hidden {
    /// Visible images only (Glance's default listing).
    #[default]
    Exclude,
    /// Hidden images only (`os_hidden=true`).
    Only,
    /// Both: two queries, since Glance has no single query for both.
    Include,
}

/// Filters of [`Glance::list_images`]; all given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    /// Exact name. Glance never returns hidden images for a name lookup.
    pub name: Option<String>,
    /// Status.
    pub status: Option<ImageStatus>,
    /// Tags the image must all carry.
    pub tags: Vec<String>,
    /// Custom properties that must have exactly these values. Keys must not be Glance's own
    /// query parameters (`limit`, `marker`, `sort`, ...).
    pub properties: BTreeMap<String, String>,
    /// Hidden images.
    pub hidden: Hidden,
}

/// The v2 root below a catalog endpoint: the catalog may hold the service root
/// (`http://h:9292`) or a versioned URL (`http://h/image/v2`, `.../v2.17/`).
pub(crate) fn v2_root(endpoint: &Url) -> Option<Url> {
    let mut url = endpoint.clone();
    url.set_query(None);
    url.set_fragment(None);
    let mut segments: Vec<String> = url
        .path_segments()?
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if segments
        .last()
        .is_some_and(|s| s == "v2" || s.starts_with("v2."))
    {
        segments.pop();
    }
    segments.push("v2".to_owned());
    url.path_segments_mut().ok()?.clear().extend(&segments);
    Some(url)
}

impl Glance {
    /// A client for the image endpoint `endpoint` (as the catalog gives it) of `cloud`.
    pub fn new(cloud: String, session: osauth::Session, endpoint: &Url) -> Result<Self, Error> {
        let base = v2_root(endpoint).ok_or_else(|| Error::Config {
            message: format!("cloud {cloud}: image endpoint {endpoint} is not an http(s) URL"),
        })?;
        Ok(Self {
            cloud,
            session,
            base,
            silence: DEFAULT_API_TIMEOUT,
        })
    }

    /// Abandon a call when nothing moved (no answer, no upload data taken) for `timeout`.
    pub fn with_api_timeout(mut self, timeout: Duration) -> Self {
        self.silence = timeout;
        self
    }

    /// The cloud's name as messages show it.
    pub fn cloud(&self) -> &str {
        &self.cloud
    }

    /// The image API's v2 root URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `base` was checked to be a base URL in `new`, so this cannot fail
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(segments);
        }
        url
    }

    fn operation(&self, method: &Method, url: &Url) -> String {
        format!("{method} {} on cloud {}", url.path(), self.cloud)
    }

    /// Sends a request and turns any non-2xx answer into an [`Error`] with its kind.
    async fn send(
        &self,
        operation: &str,
        request: osauth::client::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        self.send_watched(operation, request, &Progress::new())
            .await
    }

    /// [`Self::send`], abandoned once `progress` shows nothing moved for the API timeout.
    async fn send_watched(
        &self,
        operation: &str,
        request: osauth::client::RequestBuilder,
        progress: &Progress,
    ) -> Result<reqwest::Response, Error> {
        let sent = request.send_unchecked();
        tokio::pin!(sent);
        let response = loop {
            let check = tokio::time::sleep(Duration::from_millis(250).min(self.silence));
            tokio::select! {
                result = &mut sent => break result,
                () = check => {
                    if progress.quiet_for() >= self.silence {
                        return Err(Error::Silent {
                            operation: operation.to_owned(),
                            seconds: self.silence.as_secs(),
                        });
                    }
                }
            }
        }
        .map_err(|source| Error::Transport {
            operation: operation.to_owned(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            tracing::debug!(%status, "{operation}");
            return Ok(response);
        }
        // the body is only for the message: an unreadable one is reported as empty
        let body = response.text().await.unwrap_or_default();
        Err(Error::Http {
            operation: operation.to_owned(),
            status: status.as_u16(),
            kind: ErrorKind::from_status(status.as_u16()),
            body: excerpt(&body),
        })
    }

    async fn decode<T: DeserializeOwned>(
        operation: &str,
        response: reqwest::Response,
    ) -> Result<T, Error> {
        let bytes = response.bytes().await.map_err(|e| Error::Transport {
            operation: operation.to_owned(),
            source: osauth::Error::from(e),
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            operation: operation.to_owned(),
            source,
        })
    }

    /// `POST /v2/images`: creates an image record (status `queued`, no data).
    pub async fn create_image(&self, image: &NewImage) -> Result<Image, Error> {
        let url = self.url(&["images"]);
        let op = self.operation(&Method::POST, &url);
        let response = self
            .send(
                &op,
                self.session.client().request(Method::POST, url).json(image),
            )
            .await?;
        Self::decode(&op, response).await
    }

    /// `GET /v2/images/{id}`.
    pub async fn get_image(&self, id: &str) -> Result<Image, Error> {
        let url = self.url(&["images", id]);
        let op = self.operation(&Method::GET, &url);
        let response = self
            .send(&op, self.session.client().request(Method::GET, url))
            .await?;
        Self::decode(&op, response).await
    }

    /// `GET /v2/images/{id}/tasks`: the tasks that worked on the image.
    pub async fn image_tasks(&self, id: &str) -> Result<TaskList, Error> {
        let url = self.url(&["images", id, "tasks"]);
        let op = self.operation(&Method::GET, &url);
        let response = self
            .send(&op, self.session.client().request(Method::GET, url))
            .await?;
        Self::decode(&op, response).await
    }

    /// `GET /v2/images` with filters, following pagination; with [`Hidden::Include`] the
    /// visible and the hidden listing are concatenated.
    pub async fn list_images(&self, filter: &ImageFilter) -> Result<Vec<Image>, Error> {
        match filter.hidden {
            Hidden::Exclude => self.list_pages(filter, false).await,
            Hidden::Only => self.list_pages(filter, true).await,
            Hidden::Include => {
                let mut images = self.list_pages(filter, false).await?;
                images.extend(self.list_pages(filter, true).await?);
                Ok(images)
            }
        }
    }

    async fn list_pages(&self, filter: &ImageFilter, hidden: bool) -> Result<Vec<Image>, Error> {
        let mut query: Vec<(String, String)> = vec![("limit".into(), PAGE.into())];
        if let Some(name) = &filter.name {
            query.push(("name".into(), name.clone()));
        }
        if let Some(status) = filter.status {
            query.push(("status".into(), status.to_string()));
        }
        for tag in &filter.tags {
            query.push(("tag".into(), tag.clone()));
        }
        for (key, value) in &filter.properties {
            query.push((key.clone(), value.clone()));
        }
        if hidden {
            query.push(("os_hidden".into(), "true".into()));
        }
        let url = self.url(&["images"]);
        let op = self.operation(&Method::GET, &url);
        let mut images = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut page_query = query.clone();
            if let Some(m) = &marker {
                page_query.push(("marker".into(), m.clone()));
            }
            let request = self
                .session
                .client()
                .request(Method::GET, url.clone())
                .query(&page_query);
            let page: ImageList = Self::decode(&op, self.send(&op, request).await?).await?;
            let last = page.images.last().map(|i| i.id.clone());
            images.extend(page.images);
            match (page.next, last) {
                (Some(_), Some(last)) => marker = Some(last),
                _ => return Ok(images),
            }
        }
    }

    /// `PATCH /v2/images/{id}` with a JSON patch; returns the updated image.
    pub async fn update_image(&self, id: &str, ops: &[PatchOp]) -> Result<Image, Error> {
        let url = self.url(&["images", id]);
        let op = self.operation(&Method::PATCH, &url);
        let body = serde_json::to_vec(ops).map_err(|source| Error::Decode {
            operation: op.clone(),
            source,
        })?;
        let request = self
            .session
            .client()
            .request(Method::PATCH, url)
            .header(CONTENT_TYPE, JSON_PATCH)
            .body(body);
        let response = self.send(&op, request).await?;
        Self::decode(&op, response).await
    }

    /// `PUT /v2/images/{id}/file`: sends the image data, chunked, straight from `data`.
    ///
    /// Memory stays bounded: the HTTP client pulls the next chunk only once the previous one
    /// is written to the socket. On success the image becomes `active`; if `data` fails, the
    /// request is aborted, Glance puts the image back to `queued`, and the error is
    /// [`ErrorKind::Body`] carrying the stream's own error.
    pub async fn upload_file<S>(&self, id: &str, data: S) -> Result<(), Error>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    {
        self.put_data(&["images", id, "file"], data).await
    }

    /// `GET /v2/images/{id}/file`: the image data as a stream of chunks. Nothing is buffered
    /// beyond what the consumer has not yet pulled, so piping it into [`Glance::upload_file`]
    /// of another cloud copies an image in bounded memory without a temporary file.
    pub async fn download_file(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static, Error> {
        let url = self.url(&["images", id, "file"]);
        let op = self.operation(&Method::GET, &url);
        let response = self
            .send(&op, self.session.client().request(Method::GET, url))
            .await?;
        // A source that stops sending part-way must end the copy, not hang it.
        let silence = self.silence;
        let chunks = Box::pin(response.bytes_stream());
        Ok(futures::stream::unfold(
            chunks,
            move |mut chunks| async move {
                match tokio::time::timeout(silence, chunks.next()).await {
                    Ok(Some(chunk)) => Some((chunk.map_err(io::Error::other), chunks)),
                    Ok(None) => None,
                    Err(_) => Some((
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no image data for {} s", silence.as_secs()),
                        )),
                        chunks,
                    )),
                }
            },
        ))
    }

    /// `PUT /v2/images/{id}/stage`: stages the data for a `glance-direct` import (status
    /// `uploading`); same streaming and error behaviour as [`Glance::upload_file`].
    pub async fn stage_image<S>(&self, id: &str, data: S) -> Result<(), Error>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    {
        self.put_data(&["images", id, "stage"], data).await
    }

    async fn put_data<S>(&self, segments: &[&str], data: S) -> Result<(), Error>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    {
        let url = self.url(segments);
        let op = self.operation(&Method::PUT, &url);
        // reqwest only reports that the body failed; keep the stream's own error for the caller
        let failure: Arc<Mutex<Option<io::Error>>> = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&failure);
        let progress = Progress::new();
        let taken = progress.clone();
        let body = data.map(move |chunk| {
            taken.touch();
            chunk.map_err(|e| {
                let reported = io::Error::new(e.kind(), "the image data stream failed");
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(e);
                }
                reported
            })
        });
        let request = self
            .session
            .client()
            .request(Method::PUT, url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        match self.send_watched(&op, request, &progress).await {
            Ok(_) => Ok(()),
            Err(err) => match failure.lock().ok().and_then(|mut s| s.take()) {
                Some(source) => Err(Error::Body {
                    operation: op,
                    source,
                }),
                None => Err(err),
            },
        }
    }

    /// `POST /v2/images/{id}/import` with method `glance-direct`: moves staged data into
    /// the store asynchronously (status `importing`, then `active`).
    pub async fn import_glance_direct(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["images", id, "import"]);
        let op = self.operation(&Method::POST, &url);
        let body = ImportRequest {
            method: ImportMethod {
                name: "glance-direct",
            },
        };
        self.send(
            &op,
            self.session.client().request(Method::POST, url).json(&body),
        )
        .await?;
        Ok(())
    }

    /// `POST /v2/images/{id}/members`: shares a `shared` image with project `member`, which
    /// then accepts (or rejects) it on its side.
    pub async fn add_member(&self, id: &str, member: &str) -> Result<(), Error> {
        let url = self.url(&["images", id, "members"]);
        let op = self.operation(&Method::POST, &url);
        self.send(
            &op,
            self.session
                .client()
                .request(Method::POST, url)
                .json(&serde_json::json!({ "member": member })),
        )
        .await?;
        Ok(())
    }

    /// `DELETE /v2/images/{id}`.
    pub async fn delete_image(&self, id: &str) -> Result<(), Error> {
        let url = self.url(&["images", id]);
        let op = self.operation(&Method::DELETE, &url);
        self.send(&op, self.session.client().request(Method::DELETE, url))
            .await?;
        Ok(())
    }

    /// `GET /v2/info/import`: the import methods the cloud offers.
    pub async fn import_info(&self) -> Result<ImportInfo, Error> {
        let url = self.url(&["info", "import"]);
        let op = self.operation(&Method::GET, &url);
        let response = self
            .send(&op, self.session.client().request(Method::GET, url))
            .await?;
        Self::decode(&op, response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(s: &str) -> String {
        v2_root(&Url::parse(s).unwrap()).unwrap().to_string()
    }

    #[test]
    fn v2_root_accepts_root_and_versioned_endpoints() {
        assert_eq!(root("http://127.0.0.1:19292"), "http://127.0.0.1:19292/v2");
        assert_eq!(root("http://127.0.0.1:19292/"), "http://127.0.0.1:19292/v2");
        assert_eq!(root("http://h/image/v2/"), "http://h/image/v2");
        assert_eq!(root("https://h/image/v2.17"), "https://h/image/v2");
        assert_eq!(root("http://h/image"), "http://h/image/v2");
    }
}
