// Gives each visitor's form its own identity. The page is cached and shared,
// so the server cannot: every visitor of one cached render gets the same HTML.
// The frontend derives the write's idempotency key from the form's fields and
// this value, so a double click or a re-submission of this form makes one
// write, while thirty pupils sending "Anna" from one school make thirty.
// Without JavaScript the field stays empty and the frontend asks once more,
// with a value of its own, before it writes (frontend/forms.ts).
(function () {
  var crypto = window.crypto
  if (!crypto || !crypto.getRandomValues) return
  function nonce () {
    var bytes = new Uint8Array(16)
    crypto.getRandomValues(bytes)
    var s = ''
    for (var i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16)
    return s
  }
  function fill (fresh) {
    var inputs = document.querySelectorAll('input[name="form_nonce"]')
    for (var i = 0; i < inputs.length; i++) {
      // A value the server wrote into the page (a form re-shown to this visitor
      // only) is this form's identity already: a retry must keep it. A cached
      // page has none, whatever the browser restored into the field.
      if (fresh || !inputs[i].defaultValue) inputs[i].value = nonce()
    }
  }
  fill(false)
  // A page restored from the back/forward cache is a new visit: a new identity.
  window.addEventListener('pageshow', function (event) { if (event.persisted) fill(true) })
})()
