//! Percent-encoding, the one way cleanroom writes text where only some bytes
//! may stand as they are: a URL's user, password or database (a password may
//! hold `@`, `:`, `/` or quotes), and a file name made of an image reference.

/// `text` with every byte but letters, digits and `-._~` percent-encoded.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What [`encode`] encoded, or `None` for a bad escape or bytes that are not
/// UTF-8.
pub(crate) fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn encode_what_a_url_cannot_hold_as_it_is() {
            assert_eq!(encode("plain-Pass_1.~"), "plain-Pass_1.~");
            assert_eq!(encode("it's @ a:b/c"), "it%27s%20%40%20a%3Ab%2Fc");
            assert_eq!(encode("é"), "%C3%A9");
        }

        #[test]
        fn decode_what_it_encoded_and_refuse_a_bad_escape() {
            for text in ["cleanroom-offline/postgres:15", "it's @ a:b/c", "é", ""] {
                assert_eq!(decode(&encode(text)).as_deref(), Some(text));
            }
            assert_eq!(decode("%4"), None);
            assert_eq!(decode("%zz"), None);
            assert_eq!(decode("%FF"), None, "not UTF-8");
        }
    }
}
