// The demo bot by default; ?bot= picks another. The widget opens at once (data-open) so a
// person can chat right away.
(function () {
  var s = document.createElement('script');
  s.src = '/widget.js';
  s.async = true;
  s.dataset.bot = new URLSearchParams(location.search).get('bot') || 'demo';
  s.dataset.open = 'true';
  document.head.appendChild(s);
})();
