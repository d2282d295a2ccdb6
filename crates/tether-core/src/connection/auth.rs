//! Authentication: the token, its fetch and refresh, and the one retry after the server
//! rejected it.

use super::link::{push_query, WsVerdict};
use super::Connection;
use crate::close::CloseClass;
use crate::config::TokenPlacement;
use crate::io::{Action, Cause, Event, RequestId, TetherError, Token};
use crate::protocol::Envelope;
use crate::time::{later, Duration, Instant};
use crate::timer::Timer;

/// The token and what is under way to get one.
#[derive(Debug, Default)]
pub(super) struct Auth {
    token: Option<Token>,
    /// The token fetch in flight: only its answer counts.
    fetch: Option<RequestId>,
    /// The server rejected a token and the one retry with a fresh one was made; forgotten
    /// once a connection is stable.
    retry_used: bool,
    /// The refresh fell due while an attempt was under way with the current token (the
    /// polling trial and its probe fetch none): made once it connects.
    refresh_missed: bool,
    /// A refreshed token came while the WebSocket was opening with the one before (the
    /// polling trial's probe): owed to it in an Auth once it is welcomed, or the server
    /// closes it when the old one expires.
    auth_owed: bool,
}

impl Auth {
    pub(super) fn is_fetching(&self) -> bool {
        self.fetch.is_some()
    }

    /// No answer to the fetch in flight is awaited any more.
    pub(super) fn cancel_fetch(&mut self) {
        self.fetch = None;
    }

    /// No token, or one that expired by `now`.
    pub(super) fn lacks_token(&self, now: Instant) -> bool {
        self.token
            .as_ref()
            .is_none_or(|t| t.expires_at.is_some_and(|at| at <= now))
    }

    /// The refresh fell due before the attempt under way connected.
    pub(super) fn miss_refresh(&mut self) {
        self.refresh_missed = true;
    }

    /// A WebSocket opens now, with the current token.
    pub(super) fn opening_with_current(&mut self) {
        self.auth_owed = false;
    }

    /// The WebSocket opened with an older token than the current one (see `auth_owed`).
    pub(super) fn take_auth_owed(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.auth_owed) {
            return None;
        }
        self.token.as_ref().map(|t| t.value.clone())
    }

    /// A refresh fell due meanwhile and no fetch is under way: make it now.
    pub(super) fn take_missed_refresh(&mut self) -> bool {
        std::mem::take(&mut self.refresh_missed) && self.fetch.is_none()
    }

    pub(super) fn forget_rejection(&mut self) {
        self.retry_used = false;
    }

    /// The server rejected the token: whether to retry once with a fresh one (the
    /// rejected token is dropped), or give up because that retry was made.
    pub(super) fn retry_after_rejection(&mut self) -> bool {
        if self.retry_used {
            return false;
        }
        self.retry_used = true;
        self.token = None;
        true
    }
}

impl Connection {
    /// The token provider answered [`Action::FetchToken`] `request`. An answer to a fetch
    /// the core no longer waits for (it timed out, or a newer one was asked) is ignored.
    pub fn handle_token(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<Token, String>,
    ) {
        if self.auth.fetch != Some(request) {
            return;
        }
        self.token_answered(now, result);
    }

    pub(super) fn token_answered(&mut self, now: Instant, result: Result<Token, String>) {
        self.auth.fetch = None;
        // Whatever came, the missed refresh is made (a failed one is retried on its timer).
        self.auth.refresh_missed = false;
        self.timers.stop(Timer::TokenFetch);
        // A token that expired before it arrived (the process slept while the provider
        // answered) would only be rejected: treat it as a failed fetch.
        let result = result.and_then(|token| match token.expires_at {
            Some(expires) if expires <= now => Err("the token had already expired".to_owned()),
            _ => Ok(token),
        });
        match result {
            Ok(token) => {
                if let Some(expires) = token.expires_at {
                    let lead = self
                        .config
                        .auth
                        .as_ref()
                        .map_or(Duration::ZERO, |a| a.refresh_lead);
                    let halfway = now + expires.saturating_duration_since(now) / 2;
                    let at = expires
                        .checked_sub(lead)
                        .map_or(halfway, |t| t.max(halfway));
                    self.timers.set(Timer::TokenRefresh, at);
                } else {
                    self.timers.stop(Timer::TokenRefresh);
                }
                let value = token.value.clone();
                self.auth.token = Some(token);
                if self.phase.awaits_token() {
                    self.phase.set_awaits_token(false);
                    if self.link.is_none() {
                        self.open_link(now, false);
                    }
                } else {
                    if self.config.is_protocol() && self.link.is_ready() {
                        self.transmit_envelope(now, Envelope::Auth { token: value });
                    } else if self.config.is_protocol() && self.link.is_ws() {
                        // Opened with the token before: sent once it is welcomed.
                        self.auth.auth_owed = true;
                    }
                    self.events.push_back(Event::TokenRefreshed);
                }
            }
            Err(e) => {
                self.events
                    .push_back(Event::Error(TetherError::TokenUnavailable(e.clone())));
                if self.phase.awaits_token() {
                    self.phase.set_awaits_token(false);
                    self.auth.token = None;
                    let cause = Cause {
                        kind: crate::io::CauseKind::TokenUnavailable,
                        reason: crate::text::concat("token unavailable: ", &e),
                        ..Cause::default()
                    };
                    self.attempt_failed(now, cause, CloseClass::Retry, WsVerdict::NotWs);
                } else {
                    // A failed refresh: try again soon, well before the old token expires.
                    self.timers
                        .set(Timer::TokenRefresh, later(now, Duration::from_secs(5)));
                }
            }
        }
    }

    pub(super) fn request_token(&mut self, now: Instant) {
        let Some(auth) = &self.config.auth else {
            return;
        };
        let fetch_timeout = auth.fetch_timeout;
        let request = RequestId(self.next_id());
        self.auth.fetch = Some(request);
        self.timers
            .set(Timer::TokenFetch, later(now, fetch_timeout));
        self.actions.push_back(Action::FetchToken { request });
    }

    /// The token as the configured placement wants it: added to `url`, or as headers.
    pub(super) fn authorize(&self, url: &mut String) -> Vec<(String, String)> {
        let (Some(auth), Some(token)) = (&self.config.auth, &self.auth.token) else {
            return Vec::new();
        };
        match &auth.placement {
            TokenPlacement::Header => {
                vec![(
                    "Authorization".to_owned(),
                    crate::text::concat("Bearer ", &token.value),
                )]
            }
            TokenPlacement::Query(name) => {
                push_query(url, name, &token.value);
                Vec::new()
            }
        }
    }
}
