// #bots/ID/knowledge: what the bot knows. Files dropped or picked (several at once, two uploads
// at a time, each with its progress), pages scraped from a site within crawl limits, and every
// document's processing followed live — PENDING, PROCESSING with its progress, COMPLETED with its
// chunks, or FAILED with the reason — with delete and reprocess.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Bot, Document, DocumentList } from '../api.gen';
import { ApiError, read } from '../http';
import { t } from '../i18n';
import { accessToken, api, refresh } from '../session';
import { Confirm } from '../ui/dialog';
import { Field, describe, useForm } from '../ui/form';
import { ResourceView, useResource } from '../ui/resource';
import { processLabel, typeLabel } from './labels';

const MAX_BYTES = 10 * 1024 * 1024;
const ACCEPT = '.pdf,.docx,.txt,.md,.markdown,.csv,.json,.html,.htm';
const PARALLEL = 2;

interface Upload { key: number; name: string; loaded: number; total: number; state: 'queued' | 'sending' | 'done' | 'failed'; error?: string }

/** One multipart upload with progress (fetch cannot report it); retried once on an expired token. */
function send(url: string, file: File, onProgress: (loaded: number, total: number) => void): Promise<Document> {
  const once = () => new Promise<{ status: number; body: string; retryAfter: string | null }>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    const token = accessToken();
    if (token) xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.total || file.size);
    xhr.onload = () => resolve({ status: xhr.status, body: xhr.responseText, retryAfter: xhr.getResponseHeader('retry-after') });
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The server could not be reached.'));
    const body = new FormData();
    body.append('file', file, file.name);
    xhr.send(body);
  });
  const parse = (r: { status: number; body: string; retryAfter: string | null }) =>
    read<Document>(new Response(r.status === 204 ? null : r.body, { status: r.status, headers: r.retryAfter ? { 'retry-after': r.retryAfter } : {} }));
  return once().then(async (r) => {
    if (r.status === 401 && r.body.includes('token_expired')) {
      await refresh();
      return parse(await once());
    }
    return parse(r);
  });
}

export function Knowledge({ bot, writer }: { bot: Bot; writer: boolean }) {
  const base = `/api/bots/${encodeURIComponent(bot.id)}/documents`;
  const res = useResource(() => api<DocumentList>('GET', base), [bot.id]);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [over, setOver] = useState(false);
  const [removing, setRemoving] = useState<Document | null>(null);
  const [rowError, setRowError] = useState('');
  const nextKey = useRef(0);
  const input = useRef<HTMLInputElement>(null);
  const docs = res.data?.data ?? [];

  // Follow processing: while anything is pending or processing, read the list every second.
  const busy = docs.some((d) => d.status === 'PENDING' || d.status === 'PROCESSING');
  // One read at a time: the next a second after the last answered (a slow list is not re-asked
  // over itself, which would drop every answer).
  useEffect(() => {
    if (!busy) return;
    let live = true;
    let timer: ReturnType<typeof setTimeout>;
    const next = () => { timer = setTimeout(() => void res.reload().finally(() => { if (live) next(); }), 1000); };
    next();
    return () => { live = false; clearTimeout(timer); };
  }, [busy, res.reload]);

  const patch = (key: number, change: Partial<Upload>) => setUploads((list) => list.map((u) => (u.key === key ? { ...u, ...change } : u)));

  const upload = (files: FileList | File[]) => {
    const queue = [...files].map((file) => ({ file, key: nextKey.current++ }));
    setUploads((list) => [
      ...list.filter((u) => u.state !== 'done'),
      ...queue.map(({ file, key }) => ({
        key, name: file.name, loaded: 0, total: file.size,
        ...(file.size > MAX_BYTES ? { state: 'failed' as const, error: t('tooBig') } : { state: 'queued' as const }),
      })),
    ]);
    const work = queue.filter(({ file }) => file.size <= MAX_BYTES);
    const worker = async () => {
      for (let item = work.shift(); item; item = work.shift()) {
        const { file, key } = item;
        patch(key, { state: 'sending' });
        try {
          await send(`${base}/upload`, file, (loaded, total) => patch(key, { loaded, total }));
          patch(key, { state: 'done' });
          void res.reload();
        } catch (e) {
          patch(key, { state: 'failed', error: describe(e) });
        }
      }
    };
    for (let i = 0; i < PARALLEL; i++) void worker();
  };

  const scrape = useForm(['url', 'max_pages', 'max_depth', 'title']);
  const submitScrape = scrape.submit(async () => {
    const data = new FormData(scrape.ref.current!);
    await api('POST', `${base}/scrape`, {
      url: String(data.get('url')).trim(),
      max_pages: Number(data.get('max_pages')),
      max_depth: Number(data.get('max_depth')),
    });
    scrape.ref.current!.reset();
    void res.reload();
  });

  const act = async (doc: Document, what: 'reprocess' | 'delete') => {
    setRowError('');
    try {
      if (what === 'delete') await api('DELETE', `${base}/${encodeURIComponent(doc.id)}`);
      else await api('POST', `${base}/${encodeURIComponent(doc.id)}/reprocess`);
      setRemoving(null);
      void res.reload();
    } catch (e) {
      setRowError(describe(e));
    }
  };

  return (
    <div class="knowledge">
      {writer && (
        <div class="grid2">
          <section class="panel" aria-labelledby="upload-title">
            <h2 id="upload-title">{t('uploadTitle')}</h2>
            <div
              id="drop-zone"
              class={`drop${over ? ' over' : ''}`}
              onDragOver={(e) => { e.preventDefault(); setOver(true); }}
              onDragLeave={() => setOver(false)}
              onDrop={(e) => { e.preventDefault(); setOver(false); if (e.dataTransfer?.files.length) upload(e.dataTransfer.files); }}
            >
              <p>{t('dropHere')}</p>
              <button type="button" class="secondary" onClick={() => input.current?.click()}>{t('pickFiles')}</button>
              <label for="file-input" class="sr-only">{t('pickFiles')}</label>
              <input id="file-input" ref={input} type="file" multiple accept={ACCEPT} class="sr-only" tabIndex={-1}
                onChange={(e) => { const f = (e.target as HTMLInputElement).files; if (f?.length) upload(f); (e.target as HTMLInputElement).value = ''; }} />
              <p class="hint">{t('uploadHint')}</p>
            </div>
            {uploads.length > 0 && (
              <ul id="uploads" class="uploads">
                {uploads.map((u) => (
                  <li data-state={u.state}>
                    <span class="name">{u.name}</span>
                    {u.state === 'failed' ? (
                      <span class="field-error">{u.error}</span>
                    ) : u.state === 'done' ? (
                      <span class="ok">{t('uploaded')}</span>
                    ) : (
                      <progress max={u.total || 1} value={u.loaded} aria-label={t('uploading', { name: u.name })} />
                    )}
                  </li>
                ))}
              </ul>
            )}
          </section>
          <form id="scrape-form" class="panel" ref={scrape.ref} onSubmit={submitScrape} noValidate aria-labelledby="scrape-title">
            <h2 id="scrape-title">{t('scrapeTitle')}</h2>
            <Field form={scrape} name="url" label={t('pageUrl')}>
              {(p) => <input {...p} type="url" required placeholder="https://" />}
            </Field>
            <div class="grid2">
              <Field form={scrape} name="max_pages" label={t('maxPages')} hint={t('maxPagesHint')}>
                {(p) => <input {...p} type="number" min={1} max={50} defaultValue="10" />}
              </Field>
              <Field form={scrape} name="max_depth" label={t('maxDepth')} hint={t('maxDepthHint')}>
                {(p) => <input {...p} type="number" min={0} max={3} defaultValue="1" />}
              </Field>
            </div>
            <p class="form-error" role="alert">{scrape.general}</p>
            <button id="scrape" type="submit" disabled={scrape.busy}>{t('scrape')}</button>
          </form>
        </div>
      )}
      <section class="panel" aria-labelledby="docs-title">
        <h2 id="docs-title">{t('documents')}</h2>
        {rowError && !removing && <p class="form-error" role="alert">{rowError}</p>}
        <ResourceView res={res} id="documents" isEmpty={(d) => d.data.length === 0} empty={<p>{t('noDocuments')}</p>}>
          {(d) => (
            <ul class="doc-list">
              {d.data.map((doc) => (
                <li data-document-id={doc.id} data-status={doc.status}>
                  <div class="doc-head">
                    <span class="name">{doc.title}</span>
                    <span class="badge">{typeLabel(doc.type)}</span>
                    <span class="status" data-status={doc.status}>{processLabel(doc.status)}</span>
                  </div>
                  {(doc.status === 'PENDING' || doc.status === 'PROCESSING') && (
                    <progress max={100} value={doc.progress} aria-label={t('processing', { name: doc.title })} />
                  )}
                  {doc.status === 'COMPLETED' && <p class="muted">{doc.chunks === 1 ? t('chunks1') : t('chunksN', { n: doc.chunks })}{doc.source && doc.source !== doc.title ? ` · ${doc.source}` : ''}</p>}
                  {doc.status === 'FAILED' && <p class="doc-error field-error">{doc.error || t('docFailed')}</p>}
                  {writer && (
                    <p class="actions">
                      <button type="button" class="link reprocess-doc" disabled={doc.status === 'PENDING' || doc.status === 'PROCESSING'} onClick={() => void act(doc, 'reprocess')}>{t('reprocess')}</button>
                      <button type="button" class="link danger-text delete-doc" onClick={() => setRemoving(doc)}>{t('delete')}</button>
                    </p>
                  )}
                </li>
              ))}
            </ul>
          )}
        </ResourceView>
      </section>
      {removing && (
        <Confirm id="delete-doc-dialog" title={t('deleteDocTitle', { name: removing.title })} confirm={t('deleteForGood')} danger error={rowError}
          onConfirm={() => void act(removing, 'delete')} onClose={() => { setRemoving(null); setRowError(''); }}>
          <p>{t('deleteDocBody')}</p>
        </Confirm>
      )}
    </div>
  );
}
