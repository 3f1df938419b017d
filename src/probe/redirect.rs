//! Redirects, followed here rather than by reqwest, so that what a target's registry row adds to
//! its requests (the `health.headers` and the credentials of its URL) reaches the target's own
//! origin only. reqwest's policy strips `Authorization` and cookies on a cross-origin hop but
//! sends every other header on, `X-Api-Key` included.

use reqwest::{Method, StatusCode};
use url::Url;

use crate::plan::target::Target;

/// One request of a check: where it goes and with which method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hop {
    pub url: Url,
    pub method: Method,
}

impl Hop {
    /// The target's own request.
    pub fn first(target: &Target) -> Self {
        Self {
            url: target.url.clone(),
            method: match target.method {
                crate::plan::target::Method::Get => Method::GET,
                crate::plan::target::Method::Head => Method::HEAD,
                crate::plan::target::Method::Post => Method::POST,
            },
        }
    }

    /// Whether this hop goes to the target's origin (same scheme, host and port), where the
    /// row's headers and credentials may go.
    pub fn is_target_origin(&self, target: &Target) -> bool {
        self.url.origin() == target.url.origin()
    }

    /// The URL to request: with the target's credentials on its own origin, with none anywhere
    /// else (not even credentials a `Location` header put there).
    pub fn request_url(&self, target: &Target) -> Url {
        let mut url = self.url.clone();
        let (user, password) = match self.is_target_origin(target) {
            true => (target.url.username(), target.url.password()),
            false => ("", None),
        };
        // Both only fail on URLs that cannot have credentials, which then have none to leak.
        let _ = url.set_username(user);
        let _ = url.set_password(password);
        url
    }
}

/// Where a response with `status` and `location` sends the check after `hop`: `None` when it is
/// not a redirect that can be followed (not 301, 302, 303, 307 or 308, or no usable
/// `Location`), and the response is judged as it is. Methods change as browsers (and reqwest)
/// change them: 303 turns anything but HEAD into GET, 301 and 302 turn POST into GET.
pub(super) fn next(
    hop: &Hop,
    status: StatusCode,
    location: Option<&str>,
) -> Option<Result<Hop, String>> {
    let method = match status {
        StatusCode::SEE_OTHER if hop.method != Method::HEAD => Method::GET,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND if hop.method == Method::POST => {
            Method::GET
        }
        StatusCode::MOVED_PERMANENTLY
        | StatusCode::FOUND
        | StatusCode::SEE_OTHER
        | StatusCode::TEMPORARY_REDIRECT
        | StatusCode::PERMANENT_REDIRECT => hop.method.clone(),
        _ => return None,
    };
    let url = hop.url.join(location?).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return Some(Err(format!(
            "HTTP {} to a {}: URL, which is not HTTP",
            status.as_u16(),
            url.scheme()
        )));
    }
    Some(Ok(Hop { url, method }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::plan::target::{Planned, RegistryRow, plan};

    fn target(base_url: &str) -> Target {
        let row = RegistryRow {
            service_type: "svc".into(),
            port: 1,
            base_url: Some(base_url.into()),
            health_check_endpoint: "/health".into(),
            service_config: sqlx::types::Json(serde_json::json!({})),
        };
        let probe = Config::from_toml("", "test", None).unwrap().probe;
        match plan(&row, &probe) {
            Planned::Probe(t) => t,
            Planned::Invalid(i) => panic!("{}", i.reason),
        }
    }

    fn hop(url: &str, method: Method) -> Hop {
        Hop {
            url: Url::parse(url).unwrap(),
            method,
        }
    }

    #[test]
    fn redirects_resolve_against_the_hop_and_change_methods_like_browsers() {
        let from = hop("http://a:81/x/health", Method::POST);
        let to = |status, location| next(&from, status, location).map(Result::unwrap);
        assert_eq!(
            to(StatusCode::FOUND, Some("ok")),
            Some(hop("http://a:81/x/ok", Method::GET))
        );
        assert_eq!(
            to(StatusCode::PERMANENT_REDIRECT, Some("//b:82/y")),
            Some(hop("http://b:82/y", Method::POST))
        );
        assert_eq!(
            next(
                &hop("http://a/", Method::HEAD),
                StatusCode::SEE_OTHER,
                Some("/z")
            ),
            Some(Ok(hop("http://a/z", Method::HEAD)))
        );
        assert_eq!(to(StatusCode::NOT_MODIFIED, Some("/z")), None);
        assert_eq!(to(StatusCode::FOUND, None), None);
        assert!(
            next(&from, StatusCode::FOUND, Some("file:///etc/passwd")).is_some_and(|r| r.is_err())
        );
    }

    #[test]
    fn credentials_go_to_the_target_origin_only() {
        let t = target("http://mon%40itor:P%3Ass@a:81");
        let same = hop("http://a:81/ok", Method::GET);
        assert!(same.is_target_origin(&t));
        assert_eq!(
            same.request_url(&t).as_str(),
            "http://mon%40itor:P%3Ass@a:81/ok"
        );
        for other in [
            "http://a:82/ok",
            "https://a:81/ok",
            "http://b:81/ok",
            "http://x:y@b:81/ok",
        ] {
            let other = hop(other, Method::GET);
            assert!(!other.is_target_origin(&t), "{}", other.url);
            let url = other.request_url(&t);
            assert_eq!((url.username(), url.password()), ("", None), "{url}");
        }
        // The port a scheme implies is the same origin as the port written out.
        let t = target("http://a");
        assert!(hop("http://a:80/ok", Method::GET).is_target_origin(&t));
    }
}
