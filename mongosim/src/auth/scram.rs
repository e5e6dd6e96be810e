//! The server side of SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802 / 7677) as MongoDB speaks it:
//! stored credentials derived from a password (SHA-1 hashes MongoDB's `user:mongo:password` MD5
//! digest, SHA-256 the SASLprep'd password), the server-first message, and verification of the
//! client proof with the server signature in return. No channel binding. It keeps no connection
//! state; `mod.rs` owns conversations and users.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use rand::Rng;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The SCRAM variants MongoDB supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Sha1,
    Sha256,
}

impl Mechanism {
    pub(crate) fn parse(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-1" => Some(Mechanism::Sha1),
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mechanism::Sha1 => "SCRAM-SHA-1",
            Mechanism::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self, key: &[u8], input: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => mac::<Hmac<Sha1>>(key, input),
            Mechanism::Sha256 => mac::<Hmac<Sha256>>(key, input),
        }
    }

    fn hash(self, input: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => Sha1::digest(input).to_vec(),
            Mechanism::Sha256 => Sha256::digest(input).to_vec(),
        }
    }
}

fn mac<M: Mac + KeyInit>(key: &[u8], input: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this never fails.
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Why a password cannot become a SCRAM credential.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the password is not valid under SASLprep (RFC 4013)")]
    SaslPrep(#[source] stringprep::Error),
    #[error("PBKDF2 rejected the derived key length")]
    Pbkdf2(#[source] hmac::digest::InvalidLength),
}

/// What the server stores for one user and mechanism.
#[derive(Clone)]
pub(crate) struct StoredKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for StoredKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKeys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl StoredKeys {
    /// Derives the stored keys for `user` / `password` with a fresh random salt.
    pub(crate) fn derive(
        mechanism: Mechanism,
        user: &str,
        password: &str,
    ) -> Result<StoredKeys, CredentialError> {
        let (secret, iterations, len) = match mechanism {
            Mechanism::Sha1 => {
                let digest = Md5::digest(format!("{user}:mongo:{password}").as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                (hex, 10_000, 20)
            }
            Mechanism::Sha256 => (
                stringprep::saslprep(password)
                    .map_err(CredentialError::SaslPrep)?
                    .into_owned(),
                15_000,
                32,
            ),
        };
        let salt: [u8; 16] = rand::rng().random();
        let mut salted = vec![0u8; len];
        match mechanism {
            Mechanism::Sha1 => {
                pbkdf2::pbkdf2::<Hmac<Sha1>>(secret.as_bytes(), &salt, iterations, &mut salted)
            }
            Mechanism::Sha256 => {
                pbkdf2::pbkdf2::<Hmac<Sha256>>(secret.as_bytes(), &salt, iterations, &mut salted)
            }
        }
        .map_err(CredentialError::Pbkdf2)?;
        let client_key = mechanism.hmac(&salted, b"Client Key");
        Ok(StoredKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
        })
    }
}

/// A client-first message: the user it names and the part that enters the auth message.
#[derive(Debug, Clone)]
pub(crate) struct ClientFirst {
    pub user: String,
    gs2_header: String,
    bare: String,
    nonce: String,
}

/// Decodes a SCRAM `saslname` (`=2C` is a comma, `=3D` an equals sign).
fn saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

impl ClientFirst {
    /// Parses `n,,n=<user>,r=<nonce>` (channel binding is not supported).
    pub(crate) fn parse(payload: &[u8]) -> Option<ClientFirst> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.splitn(3, ',');
        let cb = parts.next()?;
        if cb != "n" && cb != "y" {
            return None;
        }
        let authzid = parts.next()?;
        let bare = parts.next()?;
        let gs2_header = format!("{cb},{authzid},");
        let mut user = None;
        let mut nonce = None;
        for attr in bare.split(',') {
            if let Some(v) = attr.strip_prefix("n=") {
                user = saslname(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v.to_owned());
            }
        }
        Some(ClientFirst {
            user: user?,
            gs2_header,
            bare: bare.to_owned(),
            nonce: nonce.filter(|n| !n.is_empty())?,
        })
    }
}

/// The server side of one conversation after its first message.
#[derive(Debug, Clone)]
pub(crate) struct ServerFirst {
    pub mechanism: Mechanism,
    client: ClientFirst,
    nonce: String,
    message: String,
}

impl ServerFirst {
    /// Answers a client-first message: `r=<client+server nonce>,s=<salt>,i=<iterations>`.
    pub(crate) fn new(mechanism: Mechanism, client: ClientFirst, keys: &StoredKeys) -> ServerFirst {
        let extra: [u8; 24] = rand::rng().random();
        let nonce = format!("{}{}", client.nonce, B64.encode(extra));
        let message = format!(
            "r={nonce},s={},i={}",
            B64.encode(&keys.salt),
            keys.iterations
        );
        ServerFirst {
            mechanism,
            client,
            nonce,
            message,
        }
    }

    /// The user the client named.
    pub(crate) fn user(&self) -> &str {
        &self.client.user
    }

    /// The payload sent to the client.
    pub(crate) fn payload(&self) -> Vec<u8> {
        self.message.as_bytes().to_vec()
    }

    /// Verifies `c=<gs2 header>,r=<nonce>,p=<proof>`; returns the `v=<server signature>` payload,
    /// or `None` when the proof (or anything else) does not check out.
    pub(crate) fn verify(&self, keys: &StoredKeys, client_final: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(client_final).ok()?;
        let (without_proof, proof) = text.rsplit_once(",p=")?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if nonce? != self.nonce || B64.decode(binding?).ok()? != self.client.gs2_header.as_bytes() {
            return None;
        }
        let auth_message = format!("{},{},{without_proof}", self.client.bare, self.message);
        let signature = self
            .mechanism
            .hmac(&keys.stored_key, auth_message.as_bytes());
        let proof = B64.decode(proof).ok()?;
        if proof.len() != signature.len() {
            return None;
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if self.mechanism.hash(&client_key) != keys.stored_key {
            return None;
        }
        let server_signature = self
            .mechanism
            .hmac(&keys.server_key, auth_message.as_bytes());
        Some(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side, computed independently from the RFC for the test.
    fn client_final(
        mechanism: Mechanism,
        user: &str,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> String {
        let parts: Vec<&str> = server_first.split(',').collect();
        let nonce = &parts[0][2..];
        let salt = B64.decode(&parts[1][2..]).expect("salt");
        let iterations: u32 = parts[2][2..].parse().expect("iterations");
        let secret = match mechanism {
            Mechanism::Sha1 => Md5::digest(format!("{user}:mongo:{password}").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            Mechanism::Sha256 => password.to_owned(),
        };
        let mut salted = vec![0u8; if mechanism == Mechanism::Sha1 { 20 } else { 32 }];
        match mechanism {
            Mechanism::Sha1 => {
                pbkdf2::pbkdf2::<Hmac<Sha1>>(secret.as_bytes(), &salt, iterations, &mut salted)
            }
            Mechanism::Sha256 => {
                pbkdf2::pbkdf2::<Hmac<Sha256>>(secret.as_bytes(), &salt, iterations, &mut salted)
            }
        }
        .expect("pbkdf2");
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = mechanism.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn the_right_password_verifies_and_a_wrong_one_does_not() {
        for mechanism in [Mechanism::Sha1, Mechanism::Sha256] {
            let keys = StoredKeys::derive(mechanism, "ann", "s3cret").expect("keys");
            let first = ClientFirst::parse(b"n,,n=ann,r=abc").expect("client first");
            assert_eq!(first.user, "ann");
            let server = ServerFirst::new(mechanism, first, &keys);
            let server_first = String::from_utf8(server.payload()).expect("utf8");
            let good = client_final(mechanism, "ann", "s3cret", "n=ann,r=abc", &server_first);
            assert!(server.verify(&keys, good.as_bytes()).is_some());
            let bad = client_final(mechanism, "ann", "wrong", "n=ann,r=abc", &server_first);
            assert!(server.verify(&keys, bad.as_bytes()).is_none());
        }
    }

    #[test]
    fn sasl_names_decode_escapes() {
        assert_eq!(saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(saslname("bad=zz"), None);
    }
}
