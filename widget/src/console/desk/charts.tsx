// The dashboard's two charts, plain SVG drawn at the width their box gets (drawn again when it
// changes): conversations and messages over time (a bar of messages and a line of conversations
// per interval, each interval a group with its numbers and a tooltip), and by channel. Each chart
// is one image to a screen reader, labelled with what it shows in words.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ChannelCounts, Series } from '../api.gen';
import { t } from '../i18n';
import { count, num, scale, slotName, utc } from './format';

/** The width of the element `ref` holds, followed as it changes (a hidden box keeps the last). */
function useWidth(): [{ current: HTMLDivElement | null }, number] {
  const ref = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const el = ref.current!;
    const measure = () => { if (el.isConnected && el.clientWidth > 0) setWidth(el.clientWidth); };
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

const conversations = (n: number) => count(n, 'conversations1', 'conversationsN');
const messages = (n: number) => count(n, 'messages1', 'messagesN');

function Box({ id, boxRef, children, empty }: { id: string; boxRef: { current: HTMLDivElement | null }; children?: ComponentChildren; empty?: string }) {
  return (
    <div id={id} class="chart" ref={boxRef}>
      {children}
      {empty && <p class="no-data">{empty}</p>}
    </div>
  );
}

export function SeriesChart({ series }: { series: Series | null }) {
  const [ref, width] = useWidth();
  if (!series) return <Box id="series-chart" boxRef={ref} />;
  const pts = series.points;
  const n = pts.length;
  const hourly = series.interval === 'hour';
  const W = Math.max(260, width || 600), H = 230, m = { l: 42, r: 12, t: 10, b: 28 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const { step, top } = scale(Math.max(0, ...pts.map((p) => Math.max(p.messages, p.conversations))));
  const y = (v: number) => m.t + ph - (v / top) * ph;
  const slot = pw / Math.max(1, n);
  const cx = (i: number) => m.l + slot * (i + 0.5);
  const convTotal = pts.reduce((a, p) => a + p.conversations, 0);
  const msgTotal = pts.reduce((a, p) => a + p.messages, 0);
  const busiest = pts.reduce<(typeof pts)[number] | null>((b, p) => (p.messages > (b?.messages ?? 0) ? p : b), null);
  const slotOf = (start: number) => slotName(start, series.interval);
  const summary = n === 0 ? t('noIntervals')
    : t(hourly ? 'seriesByHour' : 'seriesByDay', {
      count: hourly ? count(n, 'hours1', 'hoursN') : count(n, 'days1', 'daysN'),
      from: slotOf(pts[0].start),
      to: slotOf(pts[n - 1].start),
      conversations: conversations(convTotal),
      messages: messages(msgTotal),
    }) + (busiest ? t('busiest', { slot: slotOf(busiest.start), messages: messages(busiest.messages) }) : '') + '.';

  const ticks: number[] = [];
  for (let v = 0; v <= top; v += step) ticks.push(v);
  // Time labels, far enough apart not to collide: hours on round steps (midnight shows the
  // date), days counted back from the latest.
  const wanted = Math.ceil(58 / slot);
  const every = hourly ? [1, 2, 3, 4, 6, 12, 24].find((k) => k >= wanted) || 24 : Math.max(1, wanted);
  const labelled = pts.map((p, i) => i).filter((i) => (hourly ? new Date(pts[i].start).getUTCHours() % every === 0 : (n - 1 - i) % every === 0));
  const bw = Math.max(1, Math.min(28, slot * 0.62));

  return (
    <Box id="series-chart" boxRef={ref} empty={!msgTotal && !convTotal ? t('noSeriesData') : undefined}>
      <svg width={W} height={H} viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary} data-points={n}>
        <g aria-hidden="true">
          {ticks.map((v) => (
            <>
              <line class={v ? 'grid' : 'axis'} x1={m.l} x2={W - m.r} y1={y(v)} y2={y(v)} />
              <text x={m.l - 6} y={y(v) + 4} text-anchor="end">{num(v)}</text>
            </>
          ))}
          {labelled.map((i) => {
            const start = pts[i].start;
            const text = hourly && new Date(start).getUTCHours() !== 0 ? utc('hour', start) : utc('day', start);
            return (
              <>
                <line class="axis" x1={cx(i)} x2={cx(i)} y1={m.t + ph} y2={m.t + ph + 4} />
                <text x={cx(i)} y={H - 8} text-anchor="middle">{text}</text>
              </>
            );
          })}
        </g>
        <g class="points">
          {pts.map((p, i) => (
            <g class="pt" data-start={p.start} data-conversations={p.conversations} data-messages={p.messages}>
              <title>{`${slotOf(p.start)} UTC: ${conversations(p.conversations)}, ${messages(p.messages)}`}</title>
              <rect class="hit" x={m.l + slot * i} y={m.t} width={slot} height={ph} fill="transparent" />
              <rect x={cx(i) - bw / 2} y={y(p.messages)} width={bw} height={m.t + ph - y(p.messages)} class="bar s-msg" rx={Math.min(2, bw / 4)} />
            </g>
          ))}
        </g>
        {n > 0 && (
          <g aria-hidden="true" pointer-events="none">
            <path d={pts.map((p, i) => `${i ? 'L' : 'M'}${cx(i).toFixed(1)},${y(p.conversations).toFixed(1)}`).join('')} class="s-line" />
            {slot >= 7 && pts.map((p, i) => <circle cx={cx(i)} cy={y(p.conversations)} r={3.2} class="s-dot" />)}
          </g>
        )}
      </svg>
    </Box>
  );
}

export function ChannelChart({ byChannel }: { byChannel: Record<string, ChannelCounts | undefined> | null }) {
  const [ref, width] = useWidth();
  if (!byChannel) return <Box id="channel-chart" boxRef={ref} />;
  const rows = Object.entries(byChannel)
    .filter((r): r is [string, ChannelCounts] => r[1] !== undefined)
    .sort((a, b) => b[1].messages - a[1].messages || a[0].localeCompare(b[0]));
  if (!rows.length) return <Box id="channel-chart" boxRef={ref} empty={t('noChannelData')} />;
  const W = Math.max(220, width || 300), row = 46, m = { l: 78, r: 40, t: 6, b: 24 };
  const H = m.t + rows.length * row + m.b, pw = W - m.l - m.r;
  const { step, top } = scale(Math.max(0, ...rows.map(([, c]) => Math.max(c.messages, c.conversations))), 3);
  const x = (v: number) => m.l + (v / top) * pw;
  const summary = t('channelSummary', {
    list: rows.map(([ch, c]) => `${ch} ${conversations(c.conversations)}, ${messages(c.messages)}`).join('; '),
  });
  const ticks: number[] = [];
  for (let v = 0; v <= top; v += step) ticks.push(v);
  return (
    <Box id="channel-chart" boxRef={ref}>
      <svg width={W} height={H} viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary}>
        <g aria-hidden="true">
          {ticks.map((v) => (
            <>
              <line class={v ? 'grid' : 'axis'} x1={x(v)} x2={x(v)} y1={m.t} y2={H - m.b} />
              <text x={x(v)} y={H - 8} text-anchor="middle">{num(v)}</text>
            </>
          ))}
        </g>
        {rows.map(([channel, c], i) => {
          const y0 = m.t + i * row + 6, h = 14;
          return (
            <g class="bar" data-channel={channel} data-conversations={c.conversations} data-messages={c.messages}>
              <title>{`${channel}: ${conversations(c.conversations)}, ${messages(c.messages)}`}</title>
              <rect class="hit" x={0} y={y0 - 4} width={W} height={row - 4} fill="transparent" />
              <text x={m.l - 8} y={y0 + h + 4} text-anchor="end" class="name">{channel}</text>
              {([[c.conversations, 's-conv', y0], [c.messages, 's-msg', y0 + h + 2]] as const).map(([v, cls, yy]) => (
                <>
                  <rect class={cls} x={m.l} y={yy} width={Math.max(v ? 2 : 0, x(v) - m.l)} height={h} rx={2} />
                  <text x={x(v) + 4} y={yy + h - 3}>{num(v)}</text>
                </>
              ))}
            </g>
          );
        })}
      </svg>
    </Box>
  );
}
