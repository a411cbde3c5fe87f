//! The properties checked after every step (see the parent module's documentation).

use super::*;

impl World {
    /// Only a credential that could be admitted is held: without one (or with one that is not
    /// a JWT) a stream is answered at its headers; in `reading_body` its token has verified.
    pub(super) fn check_credentials_first(&self, id: usize) {
        let client = &self.clients[id];
        let phase = client.slot.stream.phase();
        if matches!(client.kind, Kind::Anonymous | Kind::Garbage) {
            assert!(
                !client.slot.stream.is_held(),
                "{:?} held in {phase}",
                client.kind
            );
        }
        if phase == "reading_body" || phase == "streaming_body" {
            assert!(
                matches!(client.kind, Kind::Member | Kind::FraudAnalyst),
                "{:?} reads its body",
                client.kind
            );
        }
    }

    /// What reached the upstream is covered by an allow record, and is what the policy allows.
    pub(super) fn check_release(&self, id: usize) {
        let client = &self.clients[id];
        assert!(!client.garbled_headers, "released with unreadable headers");
        let allows = client.records.iter().filter(|r| r.is_allowed()).count();
        assert_eq!(
            allows, 1,
            "released without exactly one allow record: {client:?}"
        );
        assert!(
            client.local_reply.is_none() || client.cut,
            "released and answered locally"
        );
        let sent = client
            .upstream_headers
            .as_ref()
            .expect("released without headers");
        let header = |name: &str| {
            sent.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let model = (client.route == Route::Chat).then(|| {
            assert_eq!(
                client.upstream_body, client.body,
                "a body-decided request released before its whole body"
            );
            crate::databricks::serving::model_from_body(&client.upstream_body, MAX_BODY_BYTES).ok()
        });
        let (allowed, rule) = oracle(
            client.kind,
            client.route,
            model.clone().flatten().as_deref(),
        );
        assert!(
            allowed,
            "admitted: {:?} on {:?} (model {model:?})",
            client.kind, client.route
        );
        let record = client.records.iter().find(|r| r.is_allowed()).unwrap();
        assert_eq!(record.audit.rule.as_deref(), Some(rule));
        let kid = if client.kind == Kind::Member {
            "k1"
        } else {
            "k2"
        };
        assert!(
            self.ever_published.contains(kid),
            "admitted with a key never published"
        );
        assert_eq!(
            header("x-brickgate-subject"),
            Some(SUBJECT),
            "identity not from the token"
        );
        let authorization = header("authorization");
        match self.setup {
            Setup::Exchange => assert!(
                authorization.is_some_and(|a| a.starts_with("Bearer dbx-")),
                "the client's token went upstream in exchange mode"
            ),
            Setup::InlineKeys | Setup::RemoteKeys => {
                assert_eq!(authorization, client.authorization.as_deref())
            }
        }
    }

    pub(super) fn check_records(&self, id: usize) {
        let client = &self.clients[id];
        let expected = usize::from(client.answered());
        assert_eq!(
            client.records.len(),
            expected,
            "records for one stream: {:?}",
            client.records
        );
        if let (Some(reply), Some(record), false) =
            (&client.local_reply, client.records.first(), client.cut)
        {
            assert!(
                !record.is_allowed(),
                "answered locally with an allow record"
            );
            assert_eq!(record.audit.status, reply.status);
        }
        for record in &client.records {
            if record.audit.reason == Some("internal_error") {
                let detail = record.audit.detail.as_deref().unwrap_or_default();
                assert!(
                    client.host_failed || detail.contains("no request body reached brickgate"),
                    "internal_error without a host failure: {detail}"
                );
            }
        }
        assert!(
            !(client.garbled_trailers && client.upstream_trailers.is_some()),
            "unreadable trailers reached the upstream"
        );
        if let Some(trailers) = &client.upstream_trailers {
            for (name, _) in trailers {
                assert!(
                    name != "authorization" && !name.starts_with("x-brickgate-"),
                    "trailer {name} reached the upstream"
                );
            }
        }
    }
}
