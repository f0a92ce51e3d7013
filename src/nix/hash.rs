//! Nix's registered NAR hash (`narHash`): kept as Nix printed it, decodable to the raw sha256.
//!
//! Nix prints the same hash in several encodings depending on version and command:
//! `sha256:<52 nix-base32 chars>` (older Nix, `nix-store -q --hash`), `sha256-<44 base64
//! chars>` (SRI; `nix path-info --json` since 2.4) and `sha256:<64 hex chars>` (accepted as
//! input everywhere). Nix-base32 is not RFC 4648: its own alphabet, and the digest is read from
//! its last byte first ([`decode_nix_base32`], after Nix's `libutil/hash.cc`).

use super::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Nix's base32 alphabet: digits and lowercase letters without `e`, `o`, `u`, `t`.
const NIX_BASE32_ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

const SHA256_LEN: usize = 32;

/// A `narHash` as Nix printed it, validated to be a sha256 in one of the encodings Nix uses.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NarHash {
    text: String,
    digest: [u8; SHA256_LEN],
}

impl NarHash {
    /// Parses `sha256:<nix-base32|hex>` or `sha256-<base64>`.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        let invalid = |reason| Error::InvalidNarHash {
            hash: text.clone(),
            reason,
        };
        let digest = if let Some(b64) = text.strip_prefix("sha256-") {
            decode_base64(b64).ok_or_else(|| invalid("the SRI part is not 44 base64 characters"))?
        } else if let Some(rest) = text.strip_prefix("sha256:") {
            match rest.len() {
                52 => decode_nix_base32(rest)
                    .ok_or_else(|| invalid("not 52 valid nix-base32 characters"))?,
                64 => decode_hex(rest).ok_or_else(|| invalid("not 64 hex digits"))?,
                _ => return Err(invalid("a sha256 is 52 nix-base32 or 64 hex characters")),
            }
        } else {
            return Err(invalid(
                "expected `sha256:` or `sha256-` (other algorithms are not used for NARs)",
            ));
        };
        Ok(NarHash { text, digest })
    }

    /// The hash exactly as Nix printed it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The raw sha256 of the NAR serialisation.
    pub fn digest(&self) -> [u8; SHA256_LEN] {
        self.digest
    }

    /// The sha256 as lowercase hex.
    pub fn to_hex(&self) -> String {
        self.digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl TryFrom<String> for NarHash {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        NarHash::new(s)
    }
}

impl From<NarHash> for String {
    fn from(h: NarHash) -> String {
        h.text
    }
}

impl fmt::Display for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NarHash({:?})", self.text)
    }
}

/// Decodes a nix-base32 sha256 (52 characters). The last character holds the lowest 5 bits of
/// the first byte; bits beyond 256 must be zero.
pub(crate) fn decode_nix_base32(s: &str) -> Option<[u8; SHA256_LEN]> {
    let chars = s.as_bytes();
    if chars.len() != (SHA256_LEN * 8).div_ceil(5) {
        return None;
    }
    let mut out = [0u8; SHA256_LEN];
    for (n, &c) in chars.iter().rev().enumerate() {
        let digit = NIX_BASE32_ALPHABET.iter().position(|&a| a == c)? as u16;
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        let shifted = digit << j;
        out[i] |= (shifted & 0xff) as u8;
        let carry = (shifted >> 8) as u8;
        match out.get_mut(i + 1) {
            Some(next) => *next |= carry,
            None if carry != 0 => return None,
            None => {}
        }
    }
    Some(out)
}

/// Encodes a sha256 in nix-base32; the inverse of [`decode_nix_base32`].
pub(crate) fn encode_nix_base32(digest: &[u8; SHA256_LEN]) -> String {
    let len = (SHA256_LEN * 8).div_ceil(5);
    (0..len)
        .rev()
        .map(|n| {
            let bit = n * 5;
            let (i, j) = (bit / 8, bit % 8);
            let low = u16::from(digest[i]) >> j;
            let high = digest.get(i + 1).map_or(0, |&b| u16::from(b) << (8 - j));
            NIX_BASE32_ALPHABET[usize::from((low | high) & 0x1f)] as char
        })
        .collect()
}

/// Encodes a sha256 as standard, padded base64 (44 characters), the SRI form's digest.
pub(crate) fn encode_base64(digest: &[u8; SHA256_LEN]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(44);
    for chunk in digest.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (k, &b)| acc | u32::from(b) << (16 - 8 * k));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * k)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard, padded base64 of exactly 32 bytes (44 characters, one `=`).
fn decode_base64(s: &str) -> Option<[u8; SHA256_LEN]> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let body = s.strip_suffix('=')?.as_bytes();
    if body.len() != 43 {
        return None;
    }
    let mut bytes = Vec::with_capacity(33);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        // 4 chars = 3 bytes; the final 3 chars carry 2 bytes and 2 spare bits.
        match chunk.len() {
            4 => bytes.extend_from_slice(&acc.to_be_bytes()[1..]),
            3 => {
                if acc & 0b11 != 0 {
                    return None;
                }
                bytes.extend_from_slice(&(acc >> 2).to_be_bytes()[2..]);
            }
            _ => return None,
        }
    }
    bytes.try_into().ok()
}

fn decode_hex(s: &str) -> Option<[u8; SHA256_LEN]> {
    let mut out = [0u8; SHA256_LEN];
    // from_str_radix alone would also take a sign ("+f").
    if s.len() != SHA256_LEN * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    for (slot, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // One real output of the fixture flake, printed by Nix 2.8 in its three encodings
    // (`nix path-info --json`, `nix-store -q --hash`, and the hex of `nix-store --dump | sha256sum`).
    const SRI: &str = "sha256-wjNLE8kPf8c/lAZU4bJ4ItLc3muAoN0v7ywHXk6bdfQ=";
    const BASE32: &str = "sha256:1x3mkd75w1rcxwpxv840dggdrli2g2rf2m06jhzwfzqgr49lncy2";
    const HEX: &str = "c2334b13c90f7fc73f940654e1b27822d2dcde6b80a0dd2fef2c075e4e9b75f4";

    #[test]
    fn all_encodings_decode_to_the_same_digest() {
        let sri = NarHash::new(SRI).unwrap();
        let b32 = NarHash::new(BASE32).unwrap();
        let hex = NarHash::new(format!("sha256:{HEX}")).unwrap();
        assert_eq!(sri.to_hex(), HEX);
        assert_eq!(b32.digest(), sri.digest());
        assert_eq!(hex.digest(), sri.digest());
        assert_eq!(b32.as_str(), BASE32);
    }

    #[test]
    fn nix_base32_matches_nix_on_edge_values() {
        // `nix hash to-base32 --type sha256 00…01` and `80…00`.
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(
            encode_nix_base32(&one),
            "0080000000000000000000000000000000000000000000000000"
        );
        assert_eq!(
            decode_nix_base32("0080000000000000000000000000000000000000000000000000"),
            Some(one)
        );
        let mut high = [0u8; 32];
        high[0] = 0x80;
        assert_eq!(
            encode_nix_base32(&high),
            "0000000000000000000000000000000000000000000000000040"
        );
        // sha256 of the empty string, as `nix hash to-base32` prints it.
        let empty =
            decode_nix_base32("0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73").unwrap();
        assert_eq!(
            NarHash::new(format!("sha256:{}", encode_hex(&empty)))
                .unwrap()
                .to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn base64_encoding_is_the_sri_form() {
        let h = NarHash::new(BASE32).unwrap();
        assert_eq!(format!("sha256-{}", encode_base64(&h.digest())), SRI);
    }

    #[test]
    fn round_trip() {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        assert_eq!(decode_nix_base32(&encode_nix_base32(&d)), Some(d));
    }

    #[test]
    fn rejects_malformed_hashes() {
        for bad in [
            "",
            "md5:0123",
            "sha512-AAAA",
            // 'e' is not in the nix-base32 alphabet
            "sha256:1x3mkd75w1rcxwpxv840dggdrli2g2rf2m06jhzwfzqgr49lncye",
            // the top bits beyond 256 must be zero: 'z' as first char overflows
            "sha256:zx3mkd75w1rcxwpxv840dggdrli2g2rf2m06jhzwfzqgr49lncy2",
            "sha256-wjNLE8kPf8c/lAZU4bJ4ItLc3muAoN0v7ywHXk6bdfQ",
            "sha256-wjNLE8kPf8c/lAZU4bJ4ItLc3muAoN0v7ywHXk6bdfR=",
            "sha256-wjNLE8kPf8c!lAZU4bJ4ItLc3muAoN0v7ywHXk6bdfQ=",
            "sha256:c2334b13c90f7fc73f940654e1b27822d2dcde6b80a0dd2fef2c075e4e9b75g4",
        ] {
            let err = NarHash::new(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidNarHash { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn serde_keeps_the_original_text() {
        let h: NarHash = serde_json::from_str(&format!("\"{BASE32}\"")).unwrap();
        assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{BASE32}\""));
        assert!(serde_json::from_str::<NarHash>("\"sha256:nope\"").is_err());
    }

    fn encode_hex(d: &[u8; 32]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
}
