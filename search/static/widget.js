/* simqa Similar Q&A widget.
 *
 * On the host page:
 *   <div data-simqa-similar="CONSULTATION_ID"></div>     (or data-simqa-query="free text")
 *   <script src="https://YOUR-SIMQA-SERVER/widget.js" defer></script>
 * Optional: data-simqa-k="4" (1..50); data-simqa-faq-k="8" topics in the Related FAQ list shown
 * under the panel (0: no list; an index without topics shows none); filters of the panel:
 * data-simqa-department, data-simqa-doctor, data-simqa-since and data-simqa-until (ISO dates),
 * data-simqa-source. A filter that matches nothing shows an empty panel.
 *
 * Every text from the index is set with textContent, never parsed as HTML, so a consultation
 * containing <script> or <img onerror=...> shows as text. Links are http(s) only.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = script && script.src ? new URL(script.src, location.href).origin : location.origin;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function href(hit) {
    return /^https?:\/\//i.test(hit.url || "") ? hit.url : base + "/?id=" + encodeURIComponent(hit.id);
  }

  function link(hit, className, text) {
    var a = el("a", className, text);
    a.href = href(hit);
    return a;
  }

  function render(box, hits) {
    box.textContent = "";
    if (!hits.length) return;  // an empty panel: nothing to show, not an empty heading
    var panel = el("section", "simqa-panel");
    panel.appendChild(el("h3", "simqa-heading", "Similar Q&A"));
    hits.forEach(function (hit) {
      var entry = el("article", "simqa-entry");
      entry.setAttribute("data-simqa-id", hit.id);
      entry.appendChild(link(hit, "simqa-title", hit.title || hit.id));
      entry.appendChild(el("p", "simqa-question", hit.question_excerpt));
      if (hit.doctor) entry.appendChild(el("p", "simqa-doctor", "Dr. " + hit.doctor + " reply " + hit.department));
      if (hit.reply_excerpt) entry.appendChild(el("p", "simqa-reply", hit.reply_excerpt));
      entry.appendChild(link(hit, "simqa-more", "[Read More] " + (hit.title || hit.id)));
      panel.appendChild(entry);
    });
    box.appendChild(panel);
  }

  function renderFaq(box, topics) {
    if (!topics.length) return;
    var section = el("section", "simqa-faq");
    section.appendChild(el("h3", "simqa-heading", "Related FAQ"));
    var list = el("ul", "simqa-topics");
    topics.forEach(function (topic) {
      var label = topic.department ? topic.topic + "(" + topic.department + ")" : topic.topic;
      var item = el("li", "simqa-topic");
      if (/^https?:\/\//i.test(topic.url || "")) {
        var a = el("a", "simqa-topic-link", label);
        a.href = topic.url;
        item.appendChild(a);
      } else {
        item.textContent = label;
      }
      list.appendChild(item);
    });
    section.appendChild(list);
    box.appendChild(section);
  }

  function json(url) {
    return fetch(url).then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); });
  }

  var FILTERS = ["department", "doctor", "since", "until", "source"];

  function filters(box) {
    return FILTERS.map(function (name) {
      var value = box.getAttribute("data-simqa-" + name);
      return value ? "&" + name + "=" + encodeURIComponent(value) : "";
    }).join("");
  }

  function load(box) {
    var id = box.getAttribute("data-simqa-similar");
    var query = box.getAttribute("data-simqa-query");
    var k = encodeURIComponent(box.getAttribute("data-simqa-k") || "4");
    var faqK = box.getAttribute("data-simqa-faq-k") || "8";
    var url = id
      ? base + "/api/similar/" + encodeURIComponent(id) + "?k=" + k
      : base + "/api/search?q=" + encodeURIComponent(query || "") + "&k=" + k;
    url += filters(box);
    var faqUrl = base + "/api/related-faq?" + (id ? "id=" + encodeURIComponent(id) : "q=" + encodeURIComponent(query || "")) +
      "&k=" + encodeURIComponent(faqK);
    json(url)
      .then(function (data) {
        render(box, data.hits);
        // The topics come after the panel: a failure here leaves the panel as it is.
        if (faqK !== "0") return json(faqUrl).then(function (faq) { renderFaq(box, faq.topics); }, function () {});
      })
      .catch(function () { box.textContent = ""; });
  }

  function style() {
    if (document.getElementById("simqa-style")) return;
    var css = el("style");
    css.id = "simqa-style";
    css.textContent =
      ".simqa-panel,.simqa-faq{font:15px/1.45 system-ui,sans-serif;max-width:48rem}" +
      ".simqa-entry{border-top:1px solid #ddd;padding:.6rem 0}" +
      ".simqa-title{font-weight:600;color:#0b5cad;text-decoration:none}" +
      ".simqa-entry p{margin:.25rem 0}.simqa-doctor{color:#555;font-size:.9em}" +
      ".simqa-more{font-size:.9em;color:#0b5cad}" +
      ".simqa-topics{list-style:none;padding:0;margin:.3rem 0}.simqa-topic{padding:.15rem 0}" +
      ".simqa-topic-link{color:#0b5cad;text-decoration:none}";
    document.head.appendChild(css);
  }

  function start() {
    style();
    document.querySelectorAll("[data-simqa-similar],[data-simqa-query]").forEach(load);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
