// The panel's stylesheet. It lives in the widget's shadow root: page rules cannot reach it, and
// `:host{all:initial}` (in the loader's sheet) cuts inheritance from the page. Sizes are in px,
// never rem, so a page's root font size cannot scale the widget.
export const PANEL_CSS = `
.panel{position:fixed;bottom:92px;right:20px;z-index:2147483000;width:380px;height:min(620px,calc(100vh - 112px));display:flex;flex-direction:column;
 box-sizing:border-box;background:#fff;color:#1b1e23;border-radius:16px;overflow:hidden;box-shadow:0 12px 40px rgba(0,0,0,.28);
 font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;text-align:left;letter-spacing:normal;
 transform-origin:bottom right;transition:opacity .18s ease,transform .18s ease}
.left .panel{right:auto;left:20px;transform-origin:bottom left}
.panel[hidden]{display:none}
.panel.entering{opacity:0;transform:translateY(12px) scale(.98)}
*,*::before,*::after{box-sizing:border-box}
.head{display:flex;align-items:center;gap:10px;padding:12px 12px 12px 16px;background:var(--parla-accent);color:var(--parla-on-accent)}
.avatar{width:36px;height:36px;border-radius:50%;object-fit:cover;background:rgba(255,255,255,.25);flex:none}
.avatar[hidden]{display:none}
.who{flex:1;min-width:0}
.title{margin:0;font-size:16px;font-weight:650;line-height:1.25;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.status{margin:0;font-size:12.5px;opacity:.92;display:flex;align-items:center;gap:6px}
.status::before{content:"";width:8px;height:8px;border-radius:50%;background:#f59f00;flex:none}
.status[data-state=connected]::before{background:#2fb344}
.status[data-state=unavailable]::before{background:#c92a2a}
.icon-btn{width:36px;height:36px;border:0;border-radius:8px;background:transparent;color:inherit;cursor:pointer;display:flex;align-items:center;justify-content:center;padding:0}
.icon-btn:hover{background:rgba(255,255,255,.18)}
.icon-btn svg{width:20px;height:20px;fill:currentColor}
.log{flex:1;overflow-y:auto;padding:14px 14px 6px;background:#f6f7f9;overscroll-behavior:contain}
.messages,.live{display:flex;flex-direction:column;gap:8px}
.live:not(:empty){margin-top:8px}
.msg{max-width:84%;padding:8px 12px;border-radius:16px;white-space:pre-wrap;overflow-wrap:anywhere;font-size:15px}
.msg[data-sender=user]{align-self:flex-end;background:var(--parla-accent);color:var(--parla-on-accent);border-bottom-right-radius:4px}
.msg[data-sender=bot],.msg[data-sender=human]{align-self:flex-start;background:#fff;color:#1b1e23;border:1px solid #dde1e7;border-bottom-left-radius:4px}
.msg[data-sender=human]{border-color:var(--parla-accent)}
.msg .meta{display:block;font-size:11.5px;margin-top:2px;opacity:.85;text-align:right}
.msg.pending{opacity:.75}
.msg.greeting{opacity:.9}
.streaming .text::after{content:"\\258D";animation:blink 1s steps(1) infinite;margin-left:1px}
@keyframes blink{50%{opacity:0}}
.rich{white-space:normal}
.rich .said{margin:0 0 6px;white-space:pre-wrap}
.msg.wide{max-width:100%;align-self:stretch}
.rich img.image{display:block;max-width:100%;border-radius:10px;margin:2px 0}
.file{display:flex;gap:8px;align-items:center;color:inherit;text-decoration:none;font-weight:600}
.file small{font-weight:400;opacity:.8}
.cards{display:flex;gap:8px;overflow-x:auto;max-width:100%;padding-bottom:4px;scroll-snap-type:x mandatory;align-self:stretch}
.card{flex:none;width:220px;background:#fff;border:1px solid #dde1e7;border-radius:12px;overflow:hidden;scroll-snap-align:start;color:#1b1e23}
.msg .card{width:auto;border:0}
.msg .cards .card{width:220px;border:1px solid #dde1e7}
.card img{display:block;width:100%;height:120px;object-fit:cover}
.card .body{padding:8px 10px}
.card h3{margin:0 0 2px;font-size:14.5px}
.card p{margin:0 0 6px;font-size:13px;color:#4f5866}
.btn{display:block;width:100%;margin-top:6px;padding:7px 10px;border:1px solid var(--parla-accent);border-radius:8px;background:#fff;color:#1b1e23;
 font:inherit;font-size:14px;font-weight:600;text-align:center;text-decoration:none;cursor:pointer}
.btn:hover{background:#eef1f6}
.btn:disabled{opacity:.55;cursor:default}
form.form label{display:block;font-size:13px;font-weight:600;margin:6px 0 2px}
form.form input,form.form textarea{width:100%;font:inherit;font-size:14px;padding:6px 8px;border:1px solid #7d8796;border-radius:6px;color:#1b1e23;background:#fff}
.banner{margin:0;padding:7px 14px;background:#fff8db;color:#3d3200;border-top:1px solid #e8d88a;font-size:13.5px}
.banner[hidden]{display:none}
.line{margin:0;padding:0 14px;font-size:12.5px;color:#4f5866;min-height:18px;background:#f6f7f9}
.line:empty{min-height:0}
.line:not(:empty){padding:4px 14px}
.notice{color:#a3240f}
.from{display:block;font-size:11.5px;font-weight:650;color:#4f5866;margin-bottom:1px}
.dots{display:inline-flex;gap:3px;margin-right:6px;vertical-align:middle}
.dots i{width:5px;height:5px;border-radius:50%;background:#7d8796;animation:bounce 1.2s infinite ease-in-out}
.dots i:nth-child(2){animation-delay:.15s}.dots i:nth-child(3){animation-delay:.3s}
@keyframes bounce{0%,80%,100%{transform:translateY(0)}40%{transform:translateY(-4px)}}
.composer{display:flex;gap:8px;align-items:flex-end;padding:10px 12px;border-top:1px solid #dde1e7;background:#fff}
.composer textarea{flex:1;resize:none;font:inherit;font-size:15px;padding:9px 12px;min-height:42px;max-height:120px;border:1px solid #7d8796;border-radius:10px;color:#1b1e23;background:#fff;margin:0}
.composer textarea::placeholder{color:#5f6875}
.send{font:inherit;font-weight:650;font-size:15px;height:42px;padding:0 16px;border:0;border-radius:10px;background:var(--parla-accent);color:var(--parla-on-accent);cursor:pointer}
.send:disabled,.composer textarea:disabled{opacity:.55;cursor:not-allowed}
:focus-visible{outline:3px solid #e67700;outline-offset:2px}
.composer textarea:focus-visible{outline:2px solid var(--parla-accent);outline-offset:1px}
.sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}
@media (max-width:520px){
 .panel,.left .panel{inset:0;width:100vw;height:100vh;height:100dvh;border-radius:0;bottom:0;right:0;left:0}
 .msg{max-width:88%}
 .composer textarea{font-size:16px}
}
@media (prefers-reduced-motion:reduce){
 .panel{transition:none}.panel.entering{transform:none}
 .streaming .text::after,.dots i{animation:none}
}
`;
