package chart_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"

	"github.com/mailbot/mailbot/chart"
)

func ExampleRender() {
	out, err := chart.Render(context.Background(), chart.Spec{
		Kind:  chart.Bar,
		Title: "Mails per relay",
		X:     []string{"mx1", "mx2"},
		Series: []chart.Series{
			{Name: "sent", Values: []float64{120, 80}},
			{Name: "bounced", Values: []float64{3, 1}},
		},
		Width: 400, Height: 200,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	img, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(img.Bounds().Dx(), img.Bounds().Dy())

	_, err = chart.Render(context.Background(), chart.Spec{Kind: chart.Pie, X: []string{"a"},
		Series: []chart.Series{{Values: []float64{1, 2}}}})
	fmt.Println(err)
	// Output:
	// 400 200
	// chart: series[1].values: 2 values for 1 x labels (give one value per label)
}
