//! The API's own documentation: the hand-written `openapi.yaml`, embedded in
//! the binary, and the Swagger UI page that renders it at `/docs`.

/// The repository's `openapi.yaml`, byte for byte; served at `/openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// Where the page finds the document it renders.
const OPENAPI_PATH: &str = "/openapi.yaml";

/// The Swagger UI page for [`OPENAPI_YAML`].
///
/// The page loads `swagger-ui.css` and `swagger-ui-bundle.js` from
/// `assets_base_url` (a trailing `/` is ignored), so an air-gapped deployment
/// can point it at a local copy of the swagger-ui assets.
pub fn swagger_page(assets_base_url: &str) -> String {
    let base = html_attribute(assets_base_url.trim_end_matches('/'));
    format!(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>treecache API</title>
<link rel="stylesheet" href="{base}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<noscript>This page needs JavaScript. The API document itself is at <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a>.</noscript>
<script src="{base}/swagger-ui-bundle.js"></script>
<script>
window.onload = function () {{
  if (typeof SwaggerUIBundle === "undefined") {{
    document.getElementById("swagger-ui").textContent =
      "Swagger UI could not be loaded from the assets URL; the API document is at {OPENAPI_PATH}.";
    return;
  }}
  window.ui = SwaggerUIBundle({{
    url: "{OPENAPI_PATH}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  }});
}};
</script>
</body>
</html>
"##
    )
}

/// Escapes text for use inside a double-quoted HTML attribute.
fn html_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_document_is_the_repository_file() {
        let on_disk = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
            .expect("openapi.yaml at the repository root");
        assert_eq!(OPENAPI_YAML.as_bytes(), on_disk.as_slice());
        assert!(OPENAPI_YAML.starts_with("openapi: 3.0.3\n"));
    }

    #[test]
    fn page_loads_both_assets_from_the_base() {
        let page = swagger_page("https://cdn.example/swagger-ui-dist@5.17.14");
        assert!(page.contains(
            r#"<link rel="stylesheet" href="https://cdn.example/swagger-ui-dist@5.17.14/swagger-ui.css">"#
        ));
        assert!(page.contains(
            r#"<script src="https://cdn.example/swagger-ui-dist@5.17.14/swagger-ui-bundle.js"></script>"#
        ));
        assert!(page.contains(r#"url: "/openapi.yaml","#));
    }

    #[test]
    fn trailing_slash_of_the_base_is_ignored() {
        let page = swagger_page("http://127.0.0.1:8000/assets/");
        assert!(page.contains(r#"href="http://127.0.0.1:8000/assets/swagger-ui.css""#));
        assert!(!page.contains("assets//"));
    }

    #[test]
    fn base_cannot_break_out_of_its_attribute() {
        let page = swagger_page(r#"http://x/"><script>alert('x')</script><a b=""#);
        assert!(!page.contains("<script>alert"));
        assert!(page.contains(
            "http://x/&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;a b=&quot;/swagger-ui.css"
        ));
        // Only the page's own two script elements remain.
        assert_eq!(page.matches("<script").count(), 2);
    }

    #[test]
    fn ampersands_in_the_base_are_escaped() {
        let page = swagger_page("http://assets.local/ui?a=1&b=2");
        assert!(page.contains(r#"href="http://assets.local/ui?a=1&amp;b=2/swagger-ui.css""#));
    }
}
