//! A small well-formedness check for the XML this crate writes (SVG charts,
//! the HTML report, which is written as XHTML-compatible markup): tags
//! balanced and properly nested, attributes quoted, every `&` an entity,
//! one root element. Not a validating parser; enough to catch a broken
//! writer or an unescaped `<` or `&`.

/// Checks `text`; the error says what is wrong and where (a byte offset).
pub fn check(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    while i < b.len() {
        if b[i] != b'<' {
            let end = text[i..].find('<').map_or(b.len(), |n| i + n);
            if stack.is_empty() && !text[i..end].trim().is_empty() {
                return Err(format!("text outside the root element at {i}"));
            }
            entities(&text[i..end], i)?;
            i = end;
            continue;
        }
        let rest = &text[i..];
        let skip = |open: &str, close: &str| -> Option<Result<usize, String>> {
            rest.starts_with(open).then(|| {
                rest.find(close)
                    .map(|n| i + n + close.len())
                    .ok_or_else(|| format!("unclosed {open} at {i}"))
            })
        };
        if let Some(r) = skip("<!--", "-->")
            .or_else(|| skip("<![CDATA[", "]]>"))
            .or_else(|| skip("<?", "?>"))
        {
            if rest.starts_with("<![CDATA[") && stack.is_empty() {
                return Err(format!("CDATA outside the root at {i}"));
            }
            i = r?;
            continue;
        }
        if rest.starts_with("<!") {
            if roots > 0 || !stack.is_empty() {
                return Err(format!("a declaration inside the document at {i}"));
            }
            i += rest
                .find('>')
                .ok_or_else(|| format!("unclosed <! at {i}"))?
                + 1;
            continue;
        }
        if let Some(close) = rest.strip_prefix("</") {
            let end = close
                .find('>')
                .ok_or_else(|| format!("unclosed end tag at {i}"))?;
            let name = close[..end].trim_end();
            match stack.pop() {
                Some(open) if open == name => {}
                Some(open) => return Err(format!("</{name}> closes <{open}> at {i}")),
                None => return Err(format!("</{name}> with nothing open at {i}")),
            }
            i += 2 + end + 1;
            continue;
        }
        // A start tag: name, then attributes `name="value"` or `name='value'`.
        let mut j = i + 1;
        let name_end = j + rest[1..]
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .ok_or_else(|| format!("unclosed tag at {i}"))?;
        let name = &text[j..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_:.".contains(c))
        {
            return Err(format!("bad tag name {name:?} at {i}"));
        }
        j = name_end;
        let mut seen: Vec<&str> = Vec::new();
        let empty = loop {
            while j < b.len() && (b[j] as char).is_whitespace() {
                j += 1;
            }
            match b.get(j) {
                None => return Err(format!("unclosed <{name} at {i}")),
                Some(b'>') => break false,
                Some(b'/') if b.get(j + 1) == Some(&b'>') => {
                    j += 1;
                    break true;
                }
                _ => {}
            }
            let eq = text[j..]
                .find('=')
                .ok_or_else(|| format!("attribute without = at {j}"))?
                + j;
            let attr = text[j..eq].trim();
            if attr.is_empty()
                || !attr
                    .chars()
                    .all(|c| c.is_alphanumeric() || "-_:.".contains(c))
            {
                return Err(format!("bad attribute name {attr:?} at {j}"));
            }
            if seen.contains(&attr) {
                return Err(format!("attribute {attr} twice at {j}"));
            }
            seen.push(attr);
            let q = *b.get(eq + 1).ok_or("truncated")?;
            if q != b'"' && q != b'\'' {
                return Err(format!("unquoted attribute {attr} at {j}"));
            }
            let vend = text[eq + 2..]
                .find(q as char)
                .ok_or_else(|| format!("unclosed value of {attr} at {j}"))?
                + eq
                + 2;
            let value = &text[eq + 2..vend];
            if value.contains('<') {
                return Err(format!("< in the value of {attr} at {j}"));
            }
            entities(value, eq + 2)?;
            j = vend + 1;
        };
        if stack.is_empty() {
            roots += 1;
            if roots > 1 {
                return Err(format!("a second root element <{name}> at {i}"));
            }
        }
        if !empty {
            stack.push(name);
        }
        i = j + 1;
    }
    match (stack.last(), roots) {
        (Some(open), _) => Err(format!("<{open}> never closed")),
        (None, 0) => Err("no root element".into()),
        _ => Ok(()),
    }
}

/// Every `&` in `s` begins an entity XML knows.
fn entities(s: &str, at: usize) -> Result<(), String> {
    let mut rest = s;
    while let Some(n) = rest.find('&') {
        let tail = &rest[n + 1..];
        let end = tail
            .find(';')
            .filter(|&e| e <= 10)
            .ok_or_else(|| format!("a bare & at {}", at + s.len() - rest.len() + n))?;
        let name = &tail[..end];
        let ok = matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
            || name
                .strip_prefix("#x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || name
                .strip_prefix('#')
                .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return Err(format!("unknown entity &{name}; at {at}"));
        }
        rest = &tail[end + 1..];
    }
    Ok(())
}
