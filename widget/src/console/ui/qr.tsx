// A QR code on a canvas (lean-qr's nano build, loaded with the page that shows one).
import { generate } from 'lean-qr/nano';
import { useEffect, useRef } from 'preact/hooks';

export function Qr({ text, label }: { text: string; label: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (canvas.current) generate(text).toCanvas(canvas.current);
  }, [text]);
  return <canvas id="qr" class="qr" ref={canvas} role="img" aria-label={label} />;
}
