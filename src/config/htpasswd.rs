//! Basic authentication against an htpasswd file: bcrypt (`$2y$`, `$2b$`) and SHA-crypt
//! (`$5$`, `$6$`) hashes, checked by the `bcrypt` and `sha-crypt` crates (both compare in
//! constant time). bcrypt is slow on purpose, so each worker remembers a successful check for a
//! short time as a SHA-256 digest of the password, compared in constant time on later requests:
//! a dashboard's 50 parallel requests cost one bcrypt run per worker, not 50.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Bcrypt,
    ShaCrypt,
}

pub struct User {
    pub name: String,
    hash: String,
    scheme: Scheme,
}

/// The users of one htpasswd file.
pub struct Users {
    users: Vec<User>,
    by_name: HashMap<String, usize>,
}

/// One bad line: its 1-based number and what is wrong.
pub type LineError = (usize, String);

impl Users {
    pub fn parse(text: &str) -> Result<Users, Vec<LineError>> {
        let mut users = Vec::new();
        let mut by_name = HashMap::new();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, hash)) = line.split_once(':') else {
                errors.push((i + 1, "expected `user:hash`".to_string()));
                continue;
            };
            let scheme = match check_hash(hash) {
                Ok(s) => s,
                Err(m) => {
                    errors.push((i + 1, format!("user `{name}`: {m}")));
                    continue;
                }
            };
            if name.is_empty() {
                errors.push((i + 1, "empty user name".to_string()));
                continue;
            }
            if by_name.insert(name.to_string(), users.len()).is_some() {
                errors.push((i + 1, format!("user `{name}` is listed twice")));
                continue;
            }
            users.push(User {
                name: name.to_string(),
                hash: hash.to_string(),
                scheme,
            });
        }
        if users.is_empty() && errors.is_empty() {
            errors.push((0, "the file lists no users".to_string()));
        }
        if errors.is_empty() {
            Ok(Users { users, by_name })
        } else {
            Err(errors)
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn get(&self, i: usize) -> &User {
        &self.users[i]
    }

    /// The full (slow) check. An unknown user costs the same as a known one, so response time
    /// does not tell which user names exist.
    pub fn verify(&self, name: &[u8], password: &[u8]) -> Option<usize> {
        let found = std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.by_name.get(n))
            .copied();
        let user = &self.users[found.unwrap_or(0)];
        let ok = match user.scheme {
            Scheme::Bcrypt => bcrypt::verify(password, &user.hash).unwrap_or(false),
            Scheme::ShaCrypt => {
                use sha_crypt::PasswordVerifier;
                sha_crypt::ShaCrypt::default()
                    .verify_password(password, user.hash.as_str())
                    .is_ok()
            }
        };
        found.filter(|_| ok)
    }
}

/// Only the four accepted formats; MD5 (`$apr1$`), SHA-1 (`{SHA}`), crypt(3) DES and plain text
/// are refused, since each of them can be brute-forced or read directly.
fn check_hash(hash: &str) -> Result<Scheme, String> {
    let crypt64 = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    if let Some(rest) = hash.strip_prefix("$2y$").or_else(|| hash.strip_prefix("$2b$")) {
        let ok = rest.len() == 56
            && rest[..2].bytes().all(|b| b.is_ascii_digit())
            && (4..=31).contains(&rest[..2].parse::<u32>().unwrap_or(0))
            && rest.as_bytes()[2] == b'$'
            && crypt64(&rest[3..]);
        return if ok {
            Ok(Scheme::Bcrypt)
        } else {
            Err("malformed bcrypt hash (expected $2y$NN$ and 53 characters)".into())
        };
    }
    if hash.starts_with("$5$") || hash.starts_with("$6$") {
        let fields: Vec<&str> = hash[3..].split('$').collect();
        let ok = match fields.as_slice() {
            [salt, digest] => !salt.is_empty() && crypt64(digest),
            [rounds, salt, digest] => {
                rounds.strip_prefix("rounds=").is_some_and(|r| r.parse::<u32>().is_ok())
                    && !salt.is_empty()
                    && crypt64(digest)
            }
            _ => false,
        };
        let digest_len = if hash.starts_with("$5$") { 43 } else { 86 };
        return if ok && fields.last().is_some_and(|d| d.len() == digest_len) {
            Ok(Scheme::ShaCrypt)
        } else {
            Err("malformed SHA-crypt hash".into())
        };
    }
    let what = if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
        "MD5-crypt"
    } else if hash.starts_with("{SHA}") {
        "unsalted SHA-1"
    } else if hash.starts_with("$2a$") || hash.starts_with("$2x$") {
        "an old bcrypt variant"
    } else {
        "not a supported hash (plain text or crypt DES?)"
    };
    Err(format!(
        "{what} is refused: use bcrypt (`htpasswd -B`) or SHA-crypt ($5$/$6$)"
    ))
}

/// Splits `Basic <base64(user:password)>`; None for anything else.
pub fn decode_basic<'b>(value: &[u8], buf: &'b mut [u8; 512]) -> Option<(&'b [u8], &'b [u8])> {
    let v = crate::http::trim(value);
    if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let token = crate::http::trim(&v[6..]);
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(token, buf)
        .ok()?;
    let creds = &buf[..n];
    let colon = memchr::memchr(b':', creds)?;
    Some((&creds[..colon], &creds[colon + 1..]))
}

struct Remembered {
    digest: [u8; 32],
    until: Instant,
}

/// One worker's memory of successful checks, per basic-auth table and user.
pub struct Memory {
    tables: Vec<RefCell<HashMap<usize, Remembered>>>,
}

impl Memory {
    pub fn new(tables: usize) -> Self {
        Memory {
            tables: (0..tables).map(|_| RefCell::new(HashMap::new())).collect(),
        }
    }

    /// Checks `name:password` against table `t`, remembering a success for `remember`.
    pub fn check(
        &self,
        t: usize,
        users: &Users,
        name: &[u8],
        password: &[u8],
        remember: Duration,
        now: Instant,
    ) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(password).into();
        let id = std::str::from_utf8(name)
            .ok()
            .and_then(|n| users.by_name.get(n))
            .copied();
        if let Some(id) = id {
            if let Some(r) = self.tables[t].borrow().get(&id) {
                if now < r.until && bool::from(r.digest.ct_eq(&digest)) {
                    return Some(id);
                }
            }
        }
        let id = users.verify(name, password)?;
        if !remember.is_zero() {
            self.tables[t].borrow_mut().insert(
                id,
                Remembered {
                    digest,
                    until: now + remember,
                },
            );
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // bcrypt cost 4 of "wonderland"; `openssl passwd -5/-6 -salt saltsalt hunter2`.
    const FILE: &str = "\
# staff
alice:$2b$04$GMUzl5fDNuAcxCY98x9YhefCEwPl01Ajq7IfQK4eeoy1c2STEc31S
bob:$5$saltsalt$OIdfjX.u4Y3SJ4I2bX8w5BMf1VAUhHABNUirScDzZi3
carol:$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.
";

    #[test]
    fn verifies_each_scheme_and_remembers() {
        let users = Users::parse(FILE).unwrap();
        assert_eq!(users.verify(b"alice", b"wonderland"), Some(0));
        assert_eq!(users.verify(b"alice", b"wonderlanD"), None);
        assert_eq!(users.verify(b"bob", b"hunter2"), Some(1));
        assert_eq!(users.verify(b"carol", b"hunter2"), Some(2));
        assert_eq!(users.verify(b"carol", b"hunter3"), None);
        assert_eq!(users.verify(b"mallory", b"wonderland"), None);
        let m = Memory::new(1);
        let now = Instant::now();
        let remember = Duration::from_secs(60);
        assert_eq!(m.check(0, &users, b"alice", b"wonderland", remember, now), Some(0));
        // Remembered: the right password passes from memory, a wrong one still fails.
        assert_eq!(m.check(0, &users, b"alice", b"wonderland", remember, now), Some(0));
        assert_eq!(m.check(0, &users, b"alice", b"nope", remember, now), None);
        assert_eq!(
            m.check(0, &users, b"alice", b"wonderland", remember, now + remember),
            Some(0)
        );
    }

    #[test]
    fn refuses_weak_formats_naming_the_line() {
        let errs = Users::parse(
            "ok:$2b$04$GMUzl5fDNuAcxCY98x9YhefCEwPl01Ajq7IfQK4eeoy1c2STEc31S\nbob:$apr1$x$y\ncarol:plain\n",
        )
        .err()
        .unwrap();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].0, 2);
        assert!(errs[0].1.contains("MD5"), "{}", errs[0].1);
        assert_eq!(errs[1].0, 3);
        assert!(Users::parse("").is_err());
        assert!(Users::parse("x:{SHA}abc").err().unwrap()[0].1.contains("SHA-1"));
    }

    #[test]
    fn decodes_basic_credentials() {
        let mut buf = [0u8; 512];
        let (u, p) = decode_basic(b"Basic YWxpY2U6d29uZGVy OmxhbmQ=", &mut buf)
            .map(|(u, p)| (u.to_vec(), p.to_vec()))
            .unwrap_or_default();
        assert!(u.is_empty() && p.is_empty(), "inner spaces are not base64");
        let (u, p) = decode_basic(b"basic YWxpY2U6d29uZGVyOmxhbmQ=", &mut buf).unwrap();
        assert_eq!((u, p), (&b"alice"[..], &b"wonder:land"[..]));
        assert!(decode_basic(b"Bearer abc", &mut buf).is_none());
    }
}
