// Keeps the "participants so far" number on the home page live. The page
// itself is cached; only the tiny /counter.json is polled.
(function () {
  var el = document.getElementById('participants')
  if (!el || !window.fetch) return
  var src = el.getAttribute('data-src') || '/counter.json'
  var format = window.Intl ? new Intl.NumberFormat('en') : { format: String }
  function refresh () {
    if (document.hidden) return
    fetch(src, { headers: { accept: 'application/json' } })
      .then(function (res) { return res.ok ? res.json() : null })
      .then(function (data) {
        if (data && typeof data.participants === 'number') el.textContent = format.format(data.participants)
      })
      .catch(function () { /* keep the last number */ })
  }
  refresh()
  setInterval(refresh, 15000)
  document.addEventListener('visibilitychange', refresh)
})()
