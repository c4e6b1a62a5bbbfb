from django.contrib import admin
from django.urls import include, path

from django_quickworker import metrics

admin.site.login_template = "demo/login.html"  # the admin's sign-in page, with demo / demo on it

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics/", metrics.view),
    path("", include("demo.urls")),
]
