//! What a new password must be (NIST SP 800-63B's advice: a minimum length and a list of
//! passwords known to be common, no composition rules): at least [`MIN_LEN`] characters,
//! not the user name (with or without digits after it), and not one of the passwords leaked most often, in China and
//! elsewhere (a small built-in list; compared case-insensitively, ignoring a trailing
//! run of digits or `!` only when what is left is on the list too).

use crate::Error;

/// Characters a password has at least.
pub const MIN_LEN: usize = 8;

/// Passwords every guessing attack tries first (from the published top lists of leaked
/// passwords, with the Chinese favourites: number runs, 5201314 "I love you for ever",
/// pinyin words, keyboard walks).
const COMMON: &[&str] = &[
    "123456", "1234567", "12345678", "123456789", "1234567890", "0123456789", "12345678910", "87654321", "987654321",
    "11111111", "111111111", "00000000", "88888888", "66666666", "99999999", "12341234", "11223344", "123123123",
    "147258369", "123654789", "159357456", "1qaz2wsx", "1q2w3e4r", "1q2w3e4r5t", "q1w2e3r4", "qwertyui", "qwerty123",
    "qwertyuiop", "asdfghjk", "asdfghjkl", "zxcvbnm1", "zxcvbnm123", "1qaz2wsx3edc", "qazwsxedc", "password", "password1",
    "password123", "passw0rd", "p@ssw0rd", "p@ssword", "iloveyou", "iloveyou1", "woaini1314", "woaini520", "5201314520",
    "52013145201314", "1314520520", "woaini123", "abc12345", "abcd1234", "abc123456", "a1234567", "a12345678",
    "a123456789", "aa123456", "aa12345678", "admin123", "admin1234", "admin888", "administrator", "root1234",
    "letmein1", "welcome1", "welcome123", "sunshine", "princess", "football", "baseball", "superman", "dragon123",
    "monkey123", "shadow123", "master123", "trustno1", "changeme", "default1", "test1234", "testtest", "guest123",
    "qq123456", "qq5201314", "wang1234", "zhang123", "li123456", "woshishui", "nihao123", "aini1314", "asd12345",
    "asdf1234", "zaq12wsx", "yangyang", "huanghe1", "hospital", "hospital1", "doctor123", "yiyuan123", "readhub1",
    "readhub123", "dicom123", "pacs1234", "radiology",
];

/// Refuse a new password that is too short, the user name, or common.
pub fn check_new(username: &str, password: &str) -> Result<(), Error> {
    if password.chars().count() < MIN_LEN {
        return Err(Error::Invalid(format!(
            "the password must have at least {MIN_LEN} characters / 密码至少 {MIN_LEN} 个字符"
        )));
    }
    let lower = password.to_lowercase();
    let stem = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c == '!');
    if !username.is_empty() && (lower == username.to_lowercase() || stem == username.to_lowercase()) {
        return Err(Error::Invalid("the password must not be the user name / 密码不能是用户名".into()));
    }
    let first = lower.chars().next().unwrap_or_default();
    let all_same = lower.chars().all(|c| c == first);
    if all_same || COMMON.contains(&lower.as_str()) || (stem.chars().count() >= 6 && COMMON.contains(&stem)) {
        return Err(Error::Invalid(
            "this password is among the most common ones and is guessed first: choose another / 该密码过于常见，请换一个".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_short_and_own_name_are_refused() {
        let bad = [("rad1", "1234567"), ("rad1", "12345678"), ("rad1", "Password1"), ("rad1", "woaini1314"), ("rad1", "qwertyuiop"),
            ("rad1", "aaaaaaaaaa"), ("rad1", "password2024!"), ("zhangsan", "zhangsan"), ("admin", "Admin2024")];
        for (user, pw) in bad {
            assert!(check_new(user, pw).is_err(), "{pw} accepted for {user}");
        }
        for good in ["correct horse battery", "胸片阅读2026秋", "k3#Lm9!zQp", "rad1-secret-pw"] {
            assert!(check_new("rad1", good).is_ok(), "{good} refused");
        }
    }
}
