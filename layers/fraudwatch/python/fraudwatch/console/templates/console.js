// Each action form posts its fields as JSON to the /v1/cases route it names, then shows the case again.
document.querySelectorAll("form[data-post]").forEach(function (form) {
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = {};
    new FormData(form).forEach(function (value, name) { body[name] = name === "block" ? true : value; });
    var outcome = document.getElementById("outcome");
    outcome.textContent = "Saving…";
    fetch(form.dataset.post, {
      method: "POST",
      headers: {"content-type": "application/json"},
      body: JSON.stringify(body),
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (response.ok) { window.location.reload(); return; }
        outcome.textContent = "Not saved: " + (answer.field || "") + ": " + (answer.reason || response.status);
      });
    }).catch(function () { outcome.textContent = "Not saved: the server did not answer."; });
  });
});
