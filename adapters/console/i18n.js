// Every label of the console, in Vietnamese and English: both are shown, Vietnamese first.
// Nothing else in the console writes words of its own; the server's text is shown as is.

const LABELS = {
  title: ["Bảng điều khiển vận hành", "Operator console"],
  login: ["Đăng nhập", "Log in"],
  token: ["Mã truy cập của người vận hành", "Operator token"],
  token_hint: ["Mã được giữ trong phiên trình duyệt này, đóng thẻ là mất.",
    "Kept for this browser tab only; closing the tab forgets it."],
  logout: ["Đăng xuất", "Log out"],
  session_over: ["Mã truy cập không còn hiệu lực", "The token is no longer valid"],
  token_refused: ["Mã truy cập không đúng", "The node does not know this token"],
  signed_in: ["Người dùng", "Signed in"],
  operator: ["Vận hành", "Operator"],
  viewer: ["Chỉ xem", "Viewer"],
  refreshed: ["Cập nhật lúc", "Refreshed"],
  not_refreshing: ["Không cập nhật được", "Not refreshing"],
  node: ["Nút", "Node"],
  node_id: ["Mã nút", "Node id"],
  issued: ["Ban hành", "Issued"],
  days: ["ngày", "days"],
  level: ["Cấp", "Level"],
  version: ["Phiên bản", "Version"],
  uptime: ["Đã chạy", "Uptime"],
  health: ["Tình trạng", "Health"],
  store: ["Kho dữ liệu", "Store"],
  broker: ["Máy chủ hàng đợi", "Broker"],
  ok: ["Tốt", "OK"],
  failing: ["Lỗi", "Failing"],
  drain: ["Tạm ngừng nhận", "Drain"],
  draining: ["Đang tạm ngừng nhận", "Draining"],
  drained: ["Đã xử lý xong", "Drained"],
  in_flight: ["Đang xử lý", "In flight"],
  accepting: ["Đang nhận", "Accepting"],
  drain_on: ["Bật tạm ngừng", "Drain on"],
  drain_off: ["Tắt tạm ngừng", "Drain off"],
  clock: ["Đồng hồ", "Clock"],
  directory: ["Danh bạ", "Directory"],
  certificates: ["Chứng thư số", "Certificates"],
  days_left: ["ngày còn lại", "days left"],
  receipts_hour: ["Biên nhận trong 1 giờ", "Receipts, last hour"],
  alerts: ["Cảnh báo", "Alerts"],
  no_alerts: ["Không có cảnh báo", "No alerts"],
  topology: ["Sơ đồ liên kết", "Topology"],
  this_node: ["Nút này", "This node"],
  parent: ["Cấp trên", "Parent"],
  child: ["Cấp dưới", "Child"],
  upstream: ["Trục ngoài", "Upstream axis"],
  up: ["Kết nối", "Up"],
  down: ["Mất kết nối", "Down"],
  unknown: ["Chưa rõ", "Unknown"],
  backlog: ["Tồn đọng", "Backlog"],
  throughput: ["Lưu lượng", "Throughput"],
  last_hour: ["1 giờ qua", "last hour"],
  per_minute: ["mỗi phút", "per minute"],
  admitted: ["Nhận vào", "Admitted"],
  delivered: ["Chuyển phát", "Delivered"],
  now: ["Hiện tại", "Now"],
  total: ["Tổng", "Total"],
  no_data: ["Chưa có số liệu", "No data yet"],
  links: ["Liên kết", "Links"],
  upstreams: ["Trục liên thông ngoài", "Upstream axes"],
  neighbour: ["Nút kề", "Neighbour"],
  name: ["Tên", "Name"],
  protocol: ["Giao thức", "Protocol"],
  role: ["Vai trò", "Role"],
  state: ["Trạng thái", "State"],
  since: ["Từ lúc", "Since"],
  last_error: ["Lỗi gần nhất", "Last error"],
  backlog_out: ["Tồn gửi đi", "Backlog out"],
  backlog_in: ["Tồn nhận về", "Backlog in"],
  last_ok: ["Lần tốt gần nhất", "Last OK"],
  taken_sent: ["Nhận / gửi / từ chối", "Taken / sent / refused"],
  queues: ["Hàng đợi", "Queues"],
  messages: ["Số gói", "Messages"],
  consumers: ["Bên nhận gói", "Consumers"],
  mailboxes: ["Hộp thư chờ lấy", "Pending mailboxes"],
  organ: ["Cơ quan", "Agency"],
  pending: ["Đang chờ", "Pending"],
  oldest: ["Cũ nhất", "Oldest"],
  attention: ["Cần xử lý", "Needs attention"],
  dead_letters: ["Thư chết", "Dead letters"],
  quarantine: ["Cách ly", "Quarantine"],
  failed: ["Chuyển thất bại", "Failed"],
  overdue: ["Quá hạn xác nhận", "Overdue acknowledgements"],
  shown_of: ["đang hiện", "shown of"],
  reason: ["Lý do", "Reason"],
  source: ["Nguồn", "Source"],
  attempts: ["Số lần thử", "Attempts"],
  when: ["Thời điểm", "When"],
  sender: ["Bên gửi", "Sender"],
  recipient: ["Bên nhận", "Recipient"],
  document_id: ["Mã văn bản", "DocumentId"],
  message_id: ["Mã gói", "Message id"],
  target: ["Đích", "Target"],
  delivered_at: ["Chuyển phát lúc", "Delivered at"],
  due: ["Hạn xác nhận", "Due"],
  actions: ["Thao tác", "Actions"],
  replay: ["Gửi lại", "Replay"],
  purge: ["Xoá bỏ", "Purge"],
  release: ["Cho qua", "Release"],
  refuse: ["Từ chối", "Refuse"],
  note: ["Ghi chú (lưu vào nhật ký)", "Note (kept in the evidence log)"],
  note_required: ["Hãy ghi lý do trước khi xác nhận", "Write a note before confirming"],
  confirm: ["Xác nhận", "Confirm"],
  cancel: ["Huỷ", "Cancel"],
  dismiss: ["Đóng", "Dismiss"],
  done: ["Đã thực hiện", "Done"],
  not_done: ["Không thực hiện được", "Not done"],
  replayed_to: ["Đã gửi lại vào", "Replayed to"],
  purged: ["Đã xoá; biên nhận thất bại đã gửi", "Purged; failed receipts sent"],
  released: ["Đã cho qua", "Released"],
  refused: ["Đã từ chối", "Refused"],
  search: ["Tra cứu", "Search"],
  party: ["Cơ quan (OrganId)", "Party (OrganId)"],
  from_date: ["Từ ngày", "From"],
  until_date: ["Đến ngày", "Until"],
  search_go: ["Tìm", "Search"],
  search_hint: ["Nhập ít nhất một điều kiện", "Give at least one condition"],
  no_results: ["Không tìm thấy", "Nothing found"],
  kind: ["Loại", "Kind"],
  events: ["Sự kiện", "Events"],
  details: ["Chi tiết", "Details"],
  package: ["Gói tin", "Package"],
  route: ["Lộ trình", "Route"],
  recipients: ["Các bên nhận", "Recipients"],
  transport: ["Chuyển", "Transport"],
  business: ["Xử lý", "Business status"],
  receipts: ["Biên nhận đã ký", "Signed receipts"],
  statuses: ["Trạng thái văn bản", "Document statuses"],
  download: ["Tải về", "Download"],
  origin: ["Nút gốc", "Origin node"],
  received_at: ["Nhận lúc", "Received"],
  none: ["Không có", "None"],
  yes: ["Có", "Yes"],
  no: ["Không", "No"],
};

export function words(key) {
  const pair = LABELS[key];
  if (!pair) throw new Error(`no label ${key}`);
  return pair;
}

// "Liên kết · Links": the plain text of a label, for titles and attributes.
export function text(key) {
  const [vi, en] = words(key);
  return `${vi} · ${en}`;
}

// The same label as an element, each language in its own span (lang set, styled apart).
export function label(key, tag = "span") {
  const [vi, en] = words(key);
  const node = document.createElement(tag);
  node.className = "bi";
  const a = document.createElement("span");
  a.lang = "vi";
  a.textContent = vi;
  const b = document.createElement("span");
  b.lang = "en";
  b.textContent = en;
  const sep = document.createElement("span");
  sep.className = "sep";
  sep.textContent = " · ";
  node.append(a, sep, b);
  return node;
}

// Fill every [data-l] element of the static page with its label.
export function labelPage(root = document) {
  for (const node of root.querySelectorAll("[data-l]")) {
    node.replaceChildren(...label(node.dataset.l).childNodes);
    node.classList.add("bi");
  }
  for (const node of root.querySelectorAll("[data-l-placeholder]")) {
    node.placeholder = text(node.dataset.lPlaceholder);
  }
  for (const node of root.querySelectorAll("[data-l-title]")) {
    node.title = text(node.dataset.lTitle);
    node.setAttribute("aria-label", node.title);
  }
}
