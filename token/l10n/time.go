package l10n

import (
	"fmt"
	"time"

	"golang.org/x/text/language"
)

// China is Asia/Shanghai: the system's zone data when present, else a
// fixed UTC+8 (China has kept no summer time since 1991, so the two agree
// for every instant Keyward shows).
var China = loadChina()

func loadChina() *time.Location {
	if loc, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*3600)
}

// Time shows t in China time with UTC beside it:
//
//	Chinese: 2026年12月7日 13:07:30 北京时间（UTC 2026-12-07 05:07:30）
//	English: 7 Dec 2026 13:07:30 China time (2026-12-07 05:07:30 UTC)
func Time(t time.Time, lang language.Tag) string {
	c, u := t.In(China), t.UTC()
	if IsChinese(lang) {
		return fmt.Sprintf("%d年%d月%d日 %s 北京时间（UTC %s）", c.Year(), int(c.Month()), c.Day(), c.Format("15:04:05"), u.Format("2006-01-02 15:04:05"))
	}
	return fmt.Sprintf("%s China time (%s UTC)", c.Format("2 Jan 2006 15:04:05"), u.Format("2006-01-02 15:04:05"))
}

// Clock shows only the time of day of t in China time with UTC beside
// it, for a moment later the same day (a lock that ends, a code that
// expires): "14:05 北京时间（UTC 06:05）", "14:05 China time (06:05 UTC)".
func Clock(t time.Time, lang language.Tag) string {
	c, u := t.In(China), t.UTC()
	if IsChinese(lang) {
		return fmt.Sprintf("%s 北京时间（UTC %s）", c.Format("15:04"), u.Format("15:04"))
	}
	return fmt.Sprintf("%s China time (%s UTC)", c.Format("15:04"), u.Format("15:04"))
}
