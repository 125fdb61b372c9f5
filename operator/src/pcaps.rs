//! `GET /api/v1/entries/{id}/pcap`: the recording of an error entry's flow, for Wireshark. Recordings can
//! hold secrets, so the caller must be allowed to read ErrorViews in the namespace of the entry's source
//! or destination pod (or in the operator's namespace, whose views see everything).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kube::Client;

use crate::auth;
use crate::store::Store;

#[derive(Clone)]
pub struct Pcaps {
    pub client: Client,
    pub namespace: String,
    pub store: Arc<Store>,
}

pub async fn handle(State(p): State<Pcaps>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Some(token) = auth::bearer(&headers) else {
        return (StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
    };
    let user = match auth::review(&p.client, token).await {
        Ok(Some(u)) => u,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "the token is not valid\n").into_response(),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("cannot verify the token: {e}\n")).into_response(),
    };
    let Some((entry, pcap)) = p.store.pcap(&id) else {
        return (StatusCode::NOT_FOUND, "no recording for this entry (recording off, or it aged out)\n")
            .into_response();
    };
    let mut namespaces: Vec<String> = [&entry.src, &entry.dst].iter().filter_map(|ep| ep.namespace.clone()).collect();
    namespaces.push(p.namespace.clone());
    namespaces.dedup();
    for ns in &namespaces {
        match auth::may_read_errorviews(&p.client, &user, ns).await {
            Ok(true) => {
                let name = format!("attachment; filename=\"{id}.pcap\"");
                return (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "application/vnd.tcpdump.pcap".to_owned()),
                        (header::CONTENT_DISPOSITION, name),
                    ],
                    pcap.as_ref().clone(),
                )
                    .into_response();
            }
            Ok(false) => {}
            Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("cannot check access: {e}\n")).into_response(),
        }
    }
    (StatusCode::FORBIDDEN, "you may not read ErrorViews where this entry happened\n").into_response()
}
