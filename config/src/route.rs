//! Route templates, which name spans after the route rather than the raw path
//! (the semantic conventions' `http.route`: low cardinality, no ids).
//!
//! A template is a path of `/`-separated segments: a literal segment matches
//! itself exactly, `{name}` matches any one non-empty segment, and a final
//! `{name*}` matches whatever remains (zero or more segments).
//!
//! ```
//! use meshtrace_config::RouteTemplate;
//! let t = RouteTemplate::parse("/users/{id}/orders").unwrap();
//! assert!(t.matches("/users/42/orders"));
//! assert!(!t.matches("/users/42"));
//! let rest = RouteTemplate::parse("/static/{path*}").unwrap();
//! assert!(rest.matches("/static/css/site.css"));
//! ```

/// One parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTemplate {
    text: String,
    segments: Vec<Segment>,
    rest: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

impl RouteTemplate {
    /// Parses `text`, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(body) = text.strip_prefix('/') else {
            return Err(format!("{text:?} must start with `/`"));
        };
        let mut segments = Vec::new();
        let mut rest = false;
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            if rest {
                return Err(format!("{text:?}: `{{name*}}` must be the last segment"));
            }
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (name, star) = match name.strip_suffix('*') {
                    Some(n) => (n, true),
                    None => (name, false),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!(
                        "{text:?}: segment {} has a bad parameter name",
                        i + 1
                    ));
                }
                if star {
                    rest = true;
                } else {
                    segments.push(Segment::Param);
                }
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "{text:?}: segment {} mixes text and a parameter",
                    i + 1
                ));
            } else {
                segments.push(Segment::Literal((*part).to_string()));
            }
        }
        Ok(Self {
            text: text.to_string(),
            segments,
            rest,
        })
    }

    /// The template as written (the span name's route part).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (no query) matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        // "/" has no segments (splitting "" would yield one empty segment).
        let mut parts = body.split('/').filter(|_| !body.is_empty());
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Literal(l), Some(p)) if l == p => {}
                (Segment::Param, Some(p)) if !p.is_empty() => {}
                _ => return false,
            }
        }
        self.rest || parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::RouteTemplate;

    #[test]
    fn literal_param_and_rest_segments() {
        let t = RouteTemplate::parse("/users/{id}/orders/{order}").unwrap();
        assert!(t.matches("/users/7/orders/9"));
        assert!(!t.matches("/users/7/orders"));
        assert!(!t.matches("/users/7/orders/9/x"));
        assert!(!t.matches("/users//orders/9"), "a parameter is never empty");
        let root = RouteTemplate::parse("/").unwrap();
        assert!(root.matches("/"));
        assert!(!root.matches("/a"));
        let rest = RouteTemplate::parse("/static/{p*}").unwrap();
        assert!(rest.matches("/static"));
        assert!(rest.matches("/static/a/b"));
        assert!(!rest.matches("/other/a"));
    }

    #[test]
    fn bad_templates_are_explained() {
        for bad in ["users", "/a/{p*}/b", "/a/x{id}", "/a/{}", "/a/{b-c}"] {
            assert!(RouteTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
