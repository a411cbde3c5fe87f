//! The stream side: headers, body, local replies, callouts, metadata, the stream scheduler.

use crate::abi::host::{RawFilter, RawStreamScheduler};
use crate::abi::types::{body_type, header_type};

use super::{CalloutInitError, CounterId, HistogramId, LogLevel, log};

/// A request header or trailer whose bytes are not UTF-8 (Envoy passes them as they came).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The name of the `index`-th header is not UTF-8.
    NameNotUtf8 { index: usize },
    /// The value of header `name` is not UTF-8 (the value itself is never carried: it may be a token).
    ValueNotUtf8 { name: String },
}

/// Envoy's filter of one stream, lent to each hook of that stream for the hook's duration.
///
/// Not `Send`/`Sync`: every callback here is for the stream's worker thread. Reads copy out of
/// Envoy (see abi/host.rs), so a later setter cannot invalidate what was read.
pub struct FilterHandle {
    raw: RawFilter,
}

fn utf8_pairs(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(String, String)>, HeaderError> {
    pairs
        .into_iter()
        .enumerate()
        .map(|(index, (name, value))| {
            let name = String::from_utf8(name).map_err(|_| HeaderError::NameNotUtf8 { index })?;
            let value = String::from_utf8(value)
                .map_err(|_| HeaderError::ValueNotUtf8 { name: name.clone() })?;
            Ok((name, value))
        })
        .collect()
}

impl FilterHandle {
    pub(crate) fn new(raw: RawFilter) -> FilterHandle {
        FilterHandle { raw }
    }

    /// Every request header in order, pseudo-headers (`:path`, ...) included, as bytes.
    pub fn request_headers_bytes(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.raw
            .headers(header_type::REQUEST_HEADER)
            .unwrap_or_default()
    }

    /// Every request header as text; the first non-UTF-8 name or value is an error.
    pub fn request_headers(&self) -> Result<Vec<(String, String)>, HeaderError> {
        utf8_pairs(self.request_headers_bytes())
    }

    /// Every value of request header `name` (lower-case), as bytes.
    pub fn request_header_values(&self, name: &str) -> Vec<Vec<u8>> {
        self.raw
            .header_values(header_type::REQUEST_HEADER, name.as_bytes())
    }

    /// Replaces every value of `name` by `value`.
    pub fn set_request_header(&self, name: &str, value: &str) -> bool {
        self.raw.set_header(
            header_type::REQUEST_HEADER,
            name.as_bytes(),
            Some(value.as_bytes()),
        )
    }

    /// Adds one more value of `name`.
    pub fn add_request_header(&self, name: &str, value: &str) -> bool {
        self.raw.add_header(
            header_type::REQUEST_HEADER,
            name.as_bytes(),
            value.as_bytes(),
        )
    }

    /// Removes every value of `name`.
    pub fn remove_request_header(&self, name: &str) -> bool {
        self.raw
            .set_header(header_type::REQUEST_HEADER, name.as_bytes(), None)
    }

    /// The request trailers, `None` before they arrived or when the request has none.
    pub fn request_trailers(&self) -> Option<Result<Vec<(String, String)>, HeaderError>> {
        self.raw
            .headers(header_type::REQUEST_TRAILER)
            .map(utf8_pairs)
    }

    /// Adds one more value of a request trailer (only in `on_request_trailers`).
    pub fn add_request_trailer(&self, name: &str, value: &str) -> bool {
        self.raw.add_header(
            header_type::REQUEST_TRAILER,
            name.as_bytes(),
            value.as_bytes(),
        )
    }

    /// Removes every value of a request trailer (only in `on_request_trailers`).
    pub fn remove_request_trailer(&self, name: &str) -> bool {
        self.raw
            .set_header(header_type::REQUEST_TRAILER, name.as_bytes(), None)
    }

    /// Sets a request trailer (only in `on_request_trailers`, where the map exists).
    pub fn set_request_trailer(&self, name: &str, value: &str) -> bool {
        self.raw.set_header(
            header_type::REQUEST_TRAILER,
            name.as_bytes(),
            Some(value.as_bytes()),
        )
    }

    /// The chunk that the running `on_request_body` delivers (empty outside that hook).
    pub fn received_request_body(&self) -> Vec<u8> {
        self.raw.body(body_type::RECEIVED_REQUEST_BODY)
    }

    /// What Envoy has buffered for this filter so far (chunks answered `StopAndBuffer`).
    pub fn buffered_request_body(&self) -> Vec<u8> {
        self.raw.body(body_type::BUFFERED_REQUEST_BODY)
    }

    /// Whether the received chunk *is* the buffered body: an earlier filter buffered the request
    /// and resumed with it. Then buffered and received must not be added together.
    pub fn received_is_buffered_request_body(&self) -> bool {
        self.raw.received_buffered_request_body()
    }

    /// The request body Envoy holds for this filter so far: the buffered body, then the received
    /// chunk unless it is the buffered body itself. In Envoy 1.40, at end of stream with a body
    /// buffered, the last chunk is already moved into the buffered body (filter.cc, `decodeData`
    /// calls `addDecodedData`), so this is the whole body there.
    pub fn request_body(&self) -> Vec<u8> {
        let mut body = self.buffered_request_body();
        if !self.received_is_buffered_request_body() {
            body.extend(self.received_request_body());
        }
        body
    }

    /// The size of [`Self::request_body`], without copying it (check limits before reading).
    pub fn request_body_size(&self) -> usize {
        let buffered = self.buffered_request_body_size();
        if self.received_is_buffered_request_body() {
            buffered
        } else {
            buffered.saturating_add(self.received_request_body_size())
        }
    }

    /// The size of [`Self::buffered_request_body`], without copying it.
    pub fn buffered_request_body_size(&self) -> usize {
        self.raw.body_size(body_type::BUFFERED_REQUEST_BODY)
    }

    /// The size of [`Self::received_request_body`], without copying it.
    pub fn received_request_body_size(&self) -> usize {
        self.raw.body_size(body_type::RECEIVED_REQUEST_BODY)
    }

    /// Sends a local reply (Envoy's `sendLocalReply`); `details` is the response code details
    /// (`%RESPONSE_CODE_DETAILS%`). The hook that calls it should stop iteration.
    pub fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8], details: &str) {
        self.raw.send_response(
            status,
            &super::byte_pairs(headers),
            body,
            details.as_bytes(),
        );
    }

    /// Resumes a request held by an earlier hook (a no-op if it is not held).
    pub fn continue_decoding(&self) {
        self.raw.continue_decoding();
    }

    /// Makes Envoy pick the route again (after edits to headers the route matches on).
    pub fn clear_route_cache(&self) {
        self.raw.clear_route_cache();
    }

    /// Sends a request to `cluster`; the answer comes to [`super::Filter::on_callout_done`] with the
    /// returned id, unless the stream ends first (Envoy cancels it then). `headers` must hold
    /// `:method`, `:path` and `host`.
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CalloutInitError> {
        self.raw
            .http_callout(
                cluster.as_bytes(),
                &super::byte_pairs(headers),
                body,
                timeout_ms,
            )
            .map_err(CalloutInitError::from_abi)
    }

    /// A scheduler that wakes this stream on its worker ([`super::Filter::on_scheduled`]) from any thread.
    pub fn scheduler(&self) -> Option<StreamScheduler> {
        self.raw.scheduler().map(|raw| StreamScheduler { raw })
    }

    /// Sets a bytes filter-state object (`%FILTER_STATE(key:PLAIN)%`); false if Envoy refused
    /// (e.g. the key exists read-only).
    pub fn set_filter_state_bytes(&self, key: &str, value: &[u8]) -> bool {
        self.raw.set_filter_state_bytes(key.as_bytes(), value)
    }

    /// Sets a string in the stream's dynamic metadata (`%DYNAMIC_METADATA(ns:key)%`).
    pub fn set_dynamic_metadata_string(&self, namespace: &str, key: &str, value: &str) {
        self.raw.set_dynamic_metadata_string(
            namespace.as_bytes(),
            key.as_bytes(),
            value.as_bytes(),
        );
    }

    /// Appends a string to a list in the dynamic metadata (created if absent; false if the key
    /// holds something else).
    pub fn add_dynamic_metadata_list_string(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
    ) -> bool {
        self.raw.add_dynamic_metadata_list_string(
            namespace.as_bytes(),
            key.as_bytes(),
            value.as_bytes(),
        )
    }

    pub fn increment_counter(&self, counter: CounterId, by: u64) -> bool {
        self.raw.increment_counter(counter.0, &[], by)
    }

    /// Adds `by` to a labelled counter, its label values in the order they were defined.
    pub fn increment_labelled_counter(&self, counter: CounterId, labels: &[&str], by: u64) -> bool {
        self.raw.increment_counter(counter.0, labels, by)
    }

    pub fn record_histogram(&self, histogram: HistogramId, value: u64) -> bool {
        self.raw.record_histogram(histogram.0, value)
    }

    /// The index of the worker thread running this stream (0-based).
    pub fn worker_index(&self) -> u32 {
        self.raw.worker_index()
    }

    pub fn log(&self, level: LogLevel, message: &str) {
        log(level, message);
    }
}

/// Wakes one stream on its worker thread with an event id, from any thread. After the stream
/// ended a commit does nothing. Dropping it frees Envoy's scheduler. Envoy asks that no thread
/// still commits once the worker shuts down (abi.h): join such threads before Envoy exits.
pub struct StreamScheduler {
    raw: RawStreamScheduler,
}

impl StreamScheduler {
    pub fn commit(&self, event_id: u64) {
        self.raw.commit(event_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header name and value bytes as a test writes them.
    type RawHeaders = &'static [(&'static [u8], &'static [u8])];
    type TextHeaders = Result<Vec<(String, String)>, HeaderError>;

    fn pairs(list: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
    }

    #[test]
    fn header_text_reports_which_part_is_not_utf8_and_never_the_value() {
        let cases: [(RawHeaders, TextHeaders); 4] = [
            (
                &[(b"a", b"1"), (b"b", b"2")],
                Ok(vec![("a".into(), "1".into()), ("b".into(), "2".into())]),
            ),
            (
                &[(b"a", b"1"), (b"\xff", b"2")],
                Err(HeaderError::NameNotUtf8 { index: 1 }),
            ),
            (
                &[(b"authorization", b"Bearer \xe9")],
                Err(HeaderError::ValueNotUtf8 {
                    name: "authorization".into(),
                }),
            ),
            (&[], Ok(vec![])),
        ];
        for (input, expected) in cases {
            assert_eq!(utf8_pairs(pairs(input)), expected, "{input:?}");
        }
    }
}
